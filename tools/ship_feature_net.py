"""Put a feature network built by `miniai.fid.build_feature_net` into the package as the shipped FID network.

  MINIAI_SCALE=full .venv/bin/python tools/ship_feature_net.py            # build (or find) recipe 'full', ship it
  .venv/bin/python tools/ship_feature_net.py --weights PATH.pt            # ship a network built already

The build is deterministic for a given machine, thread count and software: seed 42, `--threads` CPU threads (2 for the
shipped network), float32. This script converts the state dict to safetensors under miniai/weights/, measures the
real-vs-test baselines (the FID "floor") at several N with 3 draws each, and writes the JSON sidecar with the recipe,
the build details and the baselines. Then set `SHIPPED_HASH` in nbs/08_fid.ipynb to the printed hash and export.
"""
import argparse, json, time
from pathlib import Path

import torch
from safetensors.torch import save_file

from miniai.datasets import fashion_mnist_tensors
from miniai.fid import (NET_PREFIX, ImageEval, build_feature_net, feature_net_config, find_feature_net, load_feature_net,
                        real_baselines)

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument('--recipe', default='full', help='feature-net recipe to build or find (default: %(default)s)')
p.add_argument('--weights', default=None, help='a .pt built by build_feature_net (default: build or find --recipe)')
p.add_argument('--threads', type=int, default=2, help='CPU threads for the build (default: %(default)s)')
p.add_argument('--ns', type=int, nargs='+', default=[128, 256, 512, 1024, 2048, 4096, 10000])
p.add_argument('--draws', type=int, default=3)
p.add_argument('--out', default='miniai/weights')
a = p.parse_args()

torch.set_num_threads(a.threads)
if a.weights is None:
    cfg = feature_net_config(a.recipe)
    path = find_feature_net(cfg) or build_feature_net(cfg, progress=True)
else: path = Path(a.weights)
net = load_feature_net(path)
meta = dict(net.feature_meta)
out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
dest = out/f'{NET_PREFIX}-{net.feature_hash}.safetensors'
save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(dest))
dest.chmod(0o644)
ie = ImageEval(net)
real = fashion_mnist_tensors(scaling='-11', pad=True, n_test=0)['train'][0]
t0 = time.time()
meta['baselines'] = [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in b.items()}
                     for b in real_baselines(ie, real, ns=a.ns, draws=a.draws)]
meta.update(weights=dest.name, baselines_seconds=round(time.time() - t0, 1),
            baselines_note='real training images (random subsets of N) against the 10,000 test images, 32x32 in [-1, 1]')
dest.with_suffix('.json').write_text(json.dumps(meta, indent=1) + '\n')
assert load_feature_net(dest).feature_hash == net.feature_hash
for b in meta['baselines']: print(f"N = {b['n']:6,}: FID {b['fid']:.3f} ± {b['fid_std']:.3f}, KID {b['kid']:.5f}")
print(f"shipped {dest} ({dest.stat().st_size/2**20:.1f} MiB): hash {net.feature_hash}, test accuracy {meta['accuracy']:.4f}")
