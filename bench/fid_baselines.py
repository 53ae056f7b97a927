"""Real-vs-test FID/KID baselines of an FID feature network: the floor that generated samples are measured against.
Real = random subsets of N Fashion-MNIST training images; reference = the 10,000 test images (32x32, [-1, 1]).
The network is the one shipped with miniai (default), or one built from a recipe of 08_fid (`--feature ci|full`: loaded
from the cache, else trained: the full recipe takes hours on a CPU, minutes on a GPU).

  .venv/bin/python bench/fid_baselines.py [--feature shipped] [--ns 512 2048] [--draws 3]
Writes bench/results/fid_baselines_<feature>.json."""
import argparse, time

from miniai.datasets import fashion_mnist_tensors
from miniai.fid import ImageEval, feature_net, fid_report, real_baselines
from _common import FEATURES, RESULTS, write_json


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--feature', default='shipped', choices=FEATURES, help='feature network (default: %(default)s)')
    p.add_argument('--ns', type=int, nargs='+', default=[512, 2048], help='sample counts N')
    p.add_argument('--draws', type=int, default=3, help='random subsets per N')
    p.add_argument('--n-train', type=int, default=None, help='draw from the first n training images (default: all)')
    p.add_argument('--progress', action='store_true', help='show training progress if the net must be trained')
    p.add_argument('--out', default=None, help='JSON output (default: bench/results/fid_baselines_<feature>.json)')
    a = p.parse_args()
    t0 = time.time()
    net = feature_net() if a.feature == 'shipped' else feature_net(a.feature, progress=a.progress)
    t_net = time.time() - t0
    ie = ImageEval(net)
    xtr = fashion_mnist_tensors(scaling='-11', pad=True, n_train=a.n_train, n_test=0)['train'][0]
    t1 = time.time()
    base = real_baselines(ie, xtr, ns=a.ns, draws=a.draws)
    res = dict(feature=a.feature, feature_net=net.feature_hash, feature_net_meta=net.feature_meta, baselines=base,
               seconds_net=round(t_net, 1), seconds_baselines=round(time.time() - t1, 1))
    for r in base:
        print(f"{fid_report(dict(r, floor=None))} ± {r['fid_std']:.3f} (FID), ± {r['kid_std']:.5f} (KID), "
              f"{r['draws']} draws of real training images")
    if 'accuracy' in net.feature_meta: print(f"test accuracy of the feature net: {net.feature_meta['accuracy']:.4f}")
    print(f"wrote {write_json(a.out or RESULTS/f'fid_baselines_{a.feature}.json', res)}")

if __name__ == '__main__': main()
