"""Benchmark 4 of the main-job issue: the share of sampling time spent outside the network's forward passes.

For each sampler of `miniai sample`, draws `--n` images in one batch with `miniai.cli.generate` (the code the command
runs) and measures the time inside the U-Net's forward calls (synchronising CUDA around each call). Everything else
-- preconditioning, the sampler's arithmetic, noise draws, Python -- is overhead. Goal: < 3%.
The weights do not change the cost of a forward pass, so a fresh model is used unless `--ckpt` names a run folder.

  python bench/sampler_overhead.py                      # micro preset (the CLI default), karras objective, 64 images, 20 steps
  python bench/sampler_overhead.py --ckpt runs/demo --progress
Writes bench/results/sampler_overhead_<device>.json.
"""
import argparse, json, sys, platform, time
from pathlib import Path

import torch
from torch import nn

from miniai.core import def_device, set_seed
from miniai.cli import SAMPLERS, build_model, default_steps, generate, load_model, nfe


class TimedNet(nn.Module):
    "Wraps a network and adds the wall-clock time of each forward call to `self.secs`."
    def __init__(self, net): super().__init__(); self.net, self.secs, self.calls = net, 0., 0
    def _sync(self, x):
        if x.is_cuda: torch.cuda.synchronize()
    def forward(self, x, *args):
        self._sync(x); t0 = time.perf_counter()
        out = self.net(x, *args)
        self._sync(out); self.secs += time.perf_counter() - t0; self.calls += 1
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ckpt', default=None, help='a `miniai train` run folder (default: a fresh model)')
    p.add_argument('--preset', default='micro')
    p.add_argument('--objective', default='karras', choices=['karras', 'ddpm'])
    p.add_argument('--n', type=int, default=64)
    p.add_argument('--steps', type=int, default=20, help='steps for the Karras-sigma samplers and ddim (ddpm always takes every step)')
    p.add_argument('--samplers', nargs='+', default=list(SAMPLERS), choices=list(SAMPLERS))
    p.add_argument('--progress', action='store_true', help='show progress bars, as `miniai sample` does by default')
    p.add_argument('--out', default=None)
    a = p.parse_args()
    if a.ckpt: net, cfg = load_model(a.ckpt)
    else:
        set_seed(0)
        net, cfg = build_model(a.objective, a.preset).to(def_device).eval(), dict(objective=a.objective, preset=a.preset, sigma_data=0.66)
    rows = []
    for smp in a.samplers:
        steps = default_steps(smp, cfg) if smp == 'ddpm' else a.steps
        tn = TimedNet(net)
        generate(tn, cfg, smp, steps, n=2, seed=0, bs=2, progress=False)     # warm-up
        tn.secs, tn.calls = 0., 0
        t0 = time.perf_counter()
        generate(tn, cfg, smp, steps, n=a.n, seed=0, bs=a.n, progress=a.progress)
        total = time.perf_counter() - t0
        r = dict(sampler=smp, steps=steps, nfe=nfe(smp, steps), net_calls=tn.calls, total_s=round(total, 3), net_s=round(tn.secs, 3),
                 overhead_pct=round(100*(total - tn.secs)/total, 2))
        print(f"{smp:9s} {r['nfe']:5d} NFE: {total:7.2f} s total, {tn.secs:7.2f} s in the network -> overhead {r['overhead_pct']:5.2f}%", flush=True)
        rows.append(r)
    res = dict(device=str(def_device), gpu=torch.cuda.get_device_name() if def_device.type == 'cuda' else None, cpu_threads=torch.get_num_threads(),
               machine=platform.machine(), torch=torch.__version__, n=a.n, preset=cfg['preset'], objective=cfg['objective'],
               progress=a.progress, ckpt=a.ckpt, command=' '.join(['python', *sys.argv]), rows=rows)
    out = Path(a.out or Path(__file__).parent/'results'/f'sampler_overhead_{def_device.type}.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f'wrote {out}')

if __name__ == '__main__': main()
