"""Full-scale ResNet classifier run (the course's recipe): prints and writes test accuracy and wall time.
Usage: .venv/bin/python bench/resnet_full.py [--epochs 5] [--aug] [--out bench/results/resnet_full.json]"""
import argparse, time

from miniai.resnet import train_classifier
from _common import RESULTS, write_json


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--aug', action='store_true', help='random crop + flip augmentation')
    p.add_argument('--out', default=str(RESULTS/'resnet_full.json'))
    a = p.parse_args()
    t0 = time.time()
    learn, metrics = train_classifier(epochs=a.epochs, aug=a.aug, progress=False)
    res = dict(epochs=a.epochs, aug=a.aug, test_accuracy=metrics.history[-1]['accuracy'], history=metrics.history,
               seconds=round(time.time() - t0, 1))
    print(f"test accuracy {res['test_accuracy']:.4f} after {a.epochs} epochs ({res['seconds']/60:.1f} min)")
    print(f'wrote {write_json(a.out, res)}')

if __name__ == '__main__': main()
