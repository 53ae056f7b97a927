"""Full-scale ResNet classifier run (the course's recipe): prints and writes test accuracy and wall time.
Usage: .venv/bin/python bench/resnet_full.py [--epochs 5] [--aug] [--out bench/results/resnet_full.json]"""
import argparse, json, platform, time
from pathlib import Path
import torch
from miniai.resnet import train_classifier

p = argparse.ArgumentParser(description=__doc__)
p.add_argument('--epochs', type=int, default=5)
p.add_argument('--aug', action='store_true', help='random crop + flip augmentation')
p.add_argument('--out', default='bench/results/resnet_full.json')
a = p.parse_args()
t0 = time.time()
learn, metrics = train_classifier(epochs=a.epochs, aug=a.aug, progress=False)
res = {'epochs': a.epochs, 'aug': a.aug, 'test_accuracy': metrics.history[-1]['accuracy'], 'history': metrics.history,
       'seconds': round(time.time() - t0, 1), 'device': str(next(learn.model.parameters()).device),
       'cpu_threads': torch.get_num_threads(), 'machine': platform.processor() or platform.machine(), 'torch': torch.__version__}
print(json.dumps(res, indent=1))
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
Path(a.out).write_text(json.dumps(res, indent=1))
