"""Benchmark 4 of the main-job issue: the share of sampling time spent outside the network's forward passes.

For each sampler of `miniai sample`, draws `--n` images in one batch with `miniai.recipes.generate` (the code the
command runs) and measures the time inside the U-Net's forward calls (synchronising CUDA around each call). Everything
else -- preconditioning, the sampler's arithmetic, noise draws, Python -- is overhead. Goal: < 3%.
The weights do not change the cost of a forward pass, so a fresh model is used unless `--ckpt` names a run folder.

  python bench/sampler_overhead.py             # micro preset (the CLI default), karras objective, 64 images, 20 steps
  python bench/sampler_overhead.py --ckpt runs/demo --progress
Writes bench/results/sampler_overhead_<device>.json.
"""
import argparse, time
from pathlib import Path

from torch import nn

from miniai.core import def_device, set_seed
from miniai.settings import OBJECTIVES, PRESETS, SAMPLER_NAMES, RunConfig
from miniai.recipes import RunInfo, build_model, default_steps, generate, load_run, nfe
from _common import RESULTS, sync, write_json


class TimedNet(nn.Module):
    "Wraps a network and adds the wall-clock time of each forward call to `self.secs`."
    def __init__(self, net): super().__init__(); self.net, self.secs, self.calls = net, 0., 0
    def forward(self, x, *args, **kwargs):
        sync(x.device); t0 = time.perf_counter()
        out = self.net(x, *args, **kwargs)
        sync(x.device); self.secs += time.perf_counter() - t0; self.calls += 1
        return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ckpt', default=None, help='a `miniai train` run folder (default: a fresh model)')
    p.add_argument('--preset', default='micro', choices=list(PRESETS))
    p.add_argument('--objective', default='karras', choices=list(OBJECTIVES))
    p.add_argument('--n', type=int, default=64)
    p.add_argument('--steps', type=int, default=20,
                   help='steps for the Karras-sigma samplers and ddim (ddpm always takes every step)')
    p.add_argument('--samplers', nargs='+', default=list(SAMPLER_NAMES), choices=list(SAMPLER_NAMES))
    p.add_argument('--progress', action='store_true', help='show progress bars, as `miniai sample` does by default')
    p.add_argument('--out', default=None)
    a = p.parse_args()
    if a.ckpt: net, info = load_run(a.ckpt)
    else:
        set_seed(0)
        cfg = RunConfig(objective=a.objective, preset=a.preset)
        net, info = build_model(cfg).to(def_device).eval(), RunInfo(Path('.'), cfg, sigma_data=0.66, n_images=60_000)
    rows = []
    for smp in a.samplers:
        steps = default_steps(smp, info.config) if smp == 'ddpm' else a.steps
        tn = TimedNet(net)
        generate(tn, info, sampler=smp, steps=steps, n=2, seed=0, bs=2, progress=False)     # warm-up
        tn.secs, tn.calls = 0., 0
        t0 = time.perf_counter()
        generate(tn, info, sampler=smp, steps=steps, n=a.n, seed=0, bs=a.n, progress=a.progress)
        total = time.perf_counter() - t0
        r = dict(sampler=smp, steps=steps, nfe=nfe(smp, steps), net_calls=tn.calls, total_s=round(total, 3),
                 net_s=round(tn.secs, 3), overhead_pct=round(100*(total - tn.secs)/total, 2))
        print(f"{smp:9s} {r['nfe']:5d} NFE: {total:7.2f} s total, {tn.secs:7.2f} s in the network -> overhead "
              f"{r['overhead_pct']:5.2f}%", flush=True)
        rows.append(r)
    res = dict(n=a.n, preset=info.config.preset, objective=info.config.objective, progress=a.progress, ckpt=a.ckpt,
               rows=rows)
    out = write_json(a.out or RESULTS/f'sampler_overhead_{def_device.type}.json', res)
    print(f'wrote {out}')

if __name__ == '__main__': main()
