"""Benchmark 2 of the main-job issue: sample quality per training minute, the course's lesson-15 recipe against miniai's.

Both recipes train on Fashion-MNIST (32x32, [-1, 1]) for the same wall-clock budget, one after the other in this process
on this machine, then draw `--n` samples each and are scored by FID/KID at the same N with the same feature net.

- course (lesson 15): diffusers `UNet2DModel` with block_out_channels (32, 64, 128, 128) and diffusers' defaults
  (attention in the lower levels, 2 layers per level, 32 groups, default init), ε-prediction on the linear β schedule
  (1e-4..0.02, T=1000), Adam lr 4e-3 (default eps), OneCycle, bs 128; sampled with 1000-step ancestral DDPM.
- miniai: the recipe `miniai train` uses by default on a CPU: the `micro` preset (widths 16/32/64, no attention, 1 layer
  per level, DDPM init of 07_ddpm_v2), Karras preconditioning (11_karras), Adam lr 5e-3 eps 1e-5, OneCycle, bs 64;
  sampled with DPM-Solver++(2M) at 20 steps.

The OneCycle schedule needs its length up front: a few timed batches estimate how many fit in the budget, and a guard
stops training at the budget in any case (the result records the steps and seconds actually used).

  python bench/quality_per_minute.py --minutes 10 --n 128     # the figure in the README (~65 min on the 2-core CPU)
  python bench/quality_per_minute.py --minutes 1 --n 32       # a smoke run
Writes bench/results/quality_per_minute_<device>.json and a PNG with both recipes' samples.
"""
import argparse, json, sys, math, platform, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torch.optim.lr_scheduler import OneCycleLR
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt

from miniai.core import def_device, set_seed
from miniai.datasets import DataLoaders, show_images
from miniai.learner import Learner, Callback, DeviceCB, TrainCB, BatchSchedCB, ProgressCB, CancelFitException
from miniai.karras import tiny_unet
from miniai.fid import ImageEval, feature_net
from miniai.cli import PRESETS, build_model, diffusion_data, objective_cb, generate, nfe

RECIPES = {
    'course': dict(cfg=dict(objective='ddpm', preset='course', schedule='linear', n_steps=1000), zero_init=False, lr=4e-3, eps=1e-8,
                   bs=128, sampler='ddpm', steps=1000),
    'miniai': dict(cfg=dict(objective='karras', preset='micro'), zero_init=True, lr=5e-3, eps=1e-5, bs=64, sampler='dpmpp_2m', steps=20),
}


class BudgetCB(Callback):
    "Count training steps; stop after `max_steps` or when `seconds` of training have passed."
    order = 100
    def __init__(self, max_steps, seconds): self.max_steps, self.seconds, self.steps, self.times = max_steps, seconds, 0, []
    def before_fit(self, learn): self.t0 = time.time()
    def after_batch(self, learn):
        if not learn.training: return
        self.steps += 1; self.times.append(time.time())
        if self.steps >= self.max_steps or time.time() - self.t0 >= self.seconds: raise CancelFitException()


def train_for(name, r, x, seconds, progress):
    "Train recipe `r` for about `seconds`; returns (model, config, record)."
    set_seed(0)
    cfg = dict(r['cfg'], sigma_data=round(x.std().item(), 4))
    model = tiny_unet(**PRESETS[cfg['preset']], zero_init=r['zero_init'])
    dls = DataLoaders.from_tensors((x,), (x[:256],), bs=r['bs'])
    def learner(max_steps, secs, sched_steps):
        cbs = [DeviceCB(), objective_cb(cfg), TrainCB(n_inp=2), BudgetCB(max_steps, secs),
               BatchSchedCB(partial(OneCycleLR, max_lr=r['lr'], total_steps=sched_steps))] + ([ProgressCB()] if progress else [])
        return Learner(model, dls, F.mse_loss, lr=r['lr'], cbs=cbs, opt_func=partial(optim.Adam, eps=r['eps']))
    # probe: time 12 batches at a negligible learning rate (OneCycle's start over 10,000 steps) to size the real schedule. The
    # first batches are slow (allocation, warm-up): timing them made the first run of this script plan 92 steps for the course
    # recipe where ~125 fit at the 4.8 s per step it then measured, so only the median time between batches 4..12 counts.
    probe = learner(12, 1e9, 10_000)
    probe.fit(1, valid=False)
    bcb = next(c for c in probe.cbs if isinstance(c, BudgetCB))
    per_batch = torch.tensor(bcb.times, dtype=torch.float64).diff()[3:].median().item()
    steps = max(10, int(seconds/per_batch))
    learn = learner(steps, seconds, steps + 1)
    budget = next(c for c in learn.cbs if isinstance(c, BudgetCB))
    t0 = time.time(); learn.fit(math.ceil(steps/len(dls.train)), valid=False); secs = time.time() - t0
    rec = dict(recipe=name, train_steps=budget.steps, planned_steps=steps, train_seconds=round(secs, 1), images_seen=budget.steps*r['bs'],
               lr=r['lr'], adam_eps=r['eps'], bs=r['bs'], params_m=round(sum(p.numel() for p in model.parameters())/1e6, 2), **cfg)
    return model.eval(), cfg, rec


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=10.)
    p.add_argument('--n', type=int, default=256)
    p.add_argument('--recipes', nargs='+', default=list(RECIPES), choices=list(RECIPES))
    p.add_argument('--feature', choices=('ci', 'full'), default='ci')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=None)
    a = p.parse_args()
    x, _ = diffusion_data()
    ie = ImageEval(feature_net(scale=a.feature))
    rows, grids = [], {}
    for name in a.recipes:
        r = RECIPES[name]
        model, cfg, rec = train_for(name, r, x, a.minutes*60, a.progress)
        t0 = time.time()
        s = generate(model, cfg, r['sampler'], r['steps'], n=a.n, seed=0, progress=a.progress)
        rec.update(sampler=r['sampler'], steps=r['steps'], nfe=nfe(r['sampler'], r['steps']), sample_seconds=round(time.time() - t0, 1), **ie.evaluate(s))
        print(f"{name:7s} {rec['train_steps']} steps in {rec['train_seconds']:.0f}s, {r['sampler']} ({rec['nfe']} NFE) in {rec['sample_seconds']:.0f}s: "
              f"FID {rec['fid']:.2f} KID {rec['kid']:.4f} (N={a.n})", flush=True)
        rows.append(rec); grids[name] = s[:32]
    res = dict(minutes=a.minutes, n=a.n, device=str(def_device), gpu=torch.cuda.get_device_name() if def_device.type == 'cuda' else None,
               cpu_threads=torch.get_num_threads(), machine=platform.machine(), torch=torch.__version__,
               command=' '.join(['python', *sys.argv]), rows=rows)
    if len(rows) == 2: res['fid_ratio_miniai_over_course'] = round(rows[1]['fid']/rows[0]['fid'], 3)
    out = Path(a.out or Path(__file__).parent/'results'/f'quality_per_minute_{def_device.type}.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    fig, axs = plt.subplots(1, len(grids), figsize=(5*len(grids), 3))
    for ax, (name, g) in zip(axs if len(grids) > 1 else [axs], grids.items()):
        grid = ((g[:32] + 1)/2).view(4, 8, 32, 32).permute(0, 2, 1, 3).reshape(128, 256)
        ax.imshow(grid, cmap='gray', vmin=0, vmax=1); ax.axis('off')
        rr = next(o for o in rows if o['recipe'] == name)
        ax.set_title(f"{name}: {rr['train_seconds']/60:.1f} min, FID {rr['fid']:.1f} (N={a.n})", fontsize=9)
    fig.tight_layout(); fig.savefig(out.with_suffix('.png'), dpi=100)
    print(f"wrote {out} and {out.with_suffix('.png')}")

if __name__ == '__main__': main()
