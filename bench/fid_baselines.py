"""Build (or load from the cache) the FID feature net and measure real-vs-test FID/KID baselines.
Real = random subsets of N Fashion-MNIST training images; reference = the 10,000 test images (32x32, [-1, 1]).
Usage: MINIAI_SCALE=full .venv/bin/python bench/fid_baselines.py [--ns 512 2048] [--draws 3] [--out bench/results/fid_baselines_full.json]
At full scale the first run trains the wide net for 20 epochs (hours on a CPU, minutes on a GPU); later runs load it."""
import argparse, json, platform, time
from pathlib import Path
import torch
from miniai.core import scale
from miniai.datasets import fashion_mnist_tensors
from miniai.fid import ImageEval, feature_net, real_baselines

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--scale', default=None, choices=['ci', 'full'], help='feature-net recipe (default: MINIAI_SCALE)')
p.add_argument('--ns', type=int, nargs='+', default=[512, 2048], help='sample counts N')
p.add_argument('--draws', type=int, default=3, help='random subsets per N')
p.add_argument('--n-train', type=int, default=None, help='draw from the first n training images (default: all 60,000)')
p.add_argument('--progress', action='store_true', help='show training progress if the net must be trained')
p.add_argument('--out', default=None, help='JSON output (default: bench/results/fid_baselines_<scale>.json)')
a = p.parse_args()
sc = a.scale or scale()

t0 = time.time()
net = feature_net(sc, progress=a.progress)
t_net = time.time() - t0
ie = ImageEval(net)
xtr = fashion_mnist_tensors(scaling='-11', pad=True, n_train=a.n_train, n_test=0)['train'][0]
t1 = time.time()
base = real_baselines(ie, xtr, ns=a.ns, draws=a.draws)
res = {'scale': sc, 'feature_net': net.feature_hash, 'feature_net_meta': net.feature_meta, 'baselines': base,
       'seconds_net': round(t_net, 1), 'seconds_baselines': round(time.time() - t1, 1), 'cpu_threads': torch.get_num_threads(),
       'machine': platform.processor() or platform.machine(), 'torch': torch.__version__}
for r in base: print(f"feature net {r['feature_net']} ({sc}), N={r['n']}: FID {r['fid']:.3f} ± {r['fid_std']:.3f}, KID {r['kid']:.5f} ± {r['kid_std']:.5f} ({r['draws']} draws)")
print(f"test accuracy of the feature net: {net.feature_meta['accuracy']:.4f}")
out = Path(a.out or f'bench/results/fid_baselines_{sc}.json')
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps(res, indent=1))
