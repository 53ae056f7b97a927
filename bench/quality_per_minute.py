"""Benchmark 2 of the main-job issue: sample quality per training minute, the course's lesson-15 recipe vs miniai's.

Both recipes train on Fashion-MNIST (32x32, [-1, 1]) for the same wall-clock budget, one after the other in this process
on this machine, then draw `--n` samples each and are scored by FID/KID at the same N with the same feature net.

- course (lesson 15): diffusers `UNet2DModel` with block_out_channels (32, 64, 128, 128) and diffusers' defaults
  (attention in the lower levels, 2 layers per level, 32 groups, default init), ε-prediction on the linear β schedule
  (1e-4..0.02, T=1000), Adam lr 4e-3 (default eps), one-cycle, bs 128; sampled with 1000-step ancestral DDPM.
- miniai: the recipe `miniai train` uses by default on a CPU: the `micro` preset (widths 16/32/64, no attention, 1 layer
  per level, DDPM init of 10_ddpm_v2), Karras preconditioning (13_karras), Adam lr 5e-3 eps 1e-5, one-cycle, bs 64;
  sampled with DPM-Solver++(2M) at 20 steps.

Both follow a one-cycle learning-rate schedule *in wall-clock time*: the lr at each batch is set from the fraction of
the budget used so far (linear warm-up over the first 30% from max_lr/25, cosine down to ~0 at the end), and training
stops when the budget is spent. So each recipe trains for exactly the minutes given and always finishes its schedule,
however fast its batches are. (The first run of this script sized a step-based OneCycle from a few timed batches
instead; the estimate was off by up to 36%, and the course recipe used 441 of its 600 seconds.)

  python bench/quality_per_minute.py --minutes 10 --n 128     # the figure in the README (48 min on the idle 2-core CPU)
  python bench/quality_per_minute.py --minutes 1 --n 32       # a smoke run
Writes bench/results/quality_per_minute_<device>.json and a PNG with both recipes' samples.

On the scale of the quality curves (bench/quality_curves.py: N = 2,048, the shipped network, at most 20 network
evaluations) a budget is a number of images: minutes x the rate the recipe trains at on the idle machine. `--calibrate`
measures that rate; `--img-per-s` then lays the one-cycle schedule over the images instead of the clock, so the run
may share the machine (`--threads 1`) without changing what it trains:

  python bench/quality_per_minute.py --recipes course --calibrate 60 --threads 2     # on the idle machine
  python bench/quality_per_minute.py --recipes course --minutes 10 --img-per-s R --threads 1 \
      --sampler dpmpp_2m --steps 20 --sigma-min 0.01 --n 2048 --out bench/results/lesson15_10min.json
  `--adam-eps 1e-5` trains it with the eps of the course's later lessons instead of PyTorch's 1e-8 (the rows record
  which: `adam_eps`).
"""
import argparse, math, os, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt

from miniai.core import def_device, set_seed
from miniai.datasets import DataLoaders
from miniai.learner import CancelFitException, Learner, DeviceCB, TrainCB, ProgressCB
from miniai.ddpm_v2 import tiny_unet
from miniai.settings import PRESETS, SampleConfig, recipe
from miniai.recipes import OBJECTIVE_PARTS, SAMPLERS, RunInfo, diffusion_data, generate, nfe
from _common import FEATURES, RESULTS, TimeBudgetCB, image_eval, write_json

# the course's lesson-15 recipe and `make demo`'s (miniai.settings.recipe), trained here for minutes instead of epochs
RECIPES = {
    'course': dict(cfg=recipe('course'), zero_init=False, eps=1e-8, sampler='ddpm', steps=1000),
    'miniai': dict(cfg=recipe('demo'), zero_init=True, eps=1e-5, sampler='dpmpp_2m', steps=20),
}


class OneCycleBudgetCB(TimeBudgetCB):
    "`TimeBudgetCB` that also sets a one-cycle lr from the share of its wall-clock budget used so far."
    def __init__(self, max_lr, seconds, pct_start=0.3, div=25., final_div=1e4):
        super().__init__(seconds)
        self.max_lr, self.pct, self.div, self.final_div = max_lr, pct_start, div, final_div
    def lr_at(self, f):
        lo, end = self.max_lr/self.div, self.max_lr/self.div/self.final_div
        if f < self.pct: return lo + (self.max_lr - lo)*f/self.pct
        return end + (self.max_lr - end)*(1 + math.cos(math.pi*min(1., (f - self.pct)/(1 - self.pct))))/2
    def before_batch(self, learn):
        if not learn.training: return
        for g in learn.opt.param_groups: g['lr'] = self.lr_at(self.fraction())
    def before_fit(self, learn):
        super().before_fit(learn)
        self.losses = []
    def after_batch(self, learn):
        if learn.training: self.losses.append(learn.loss.item())   # to tell a run that blew up from one that is slow
        super().after_batch(learn)


class OneCycleImagesCB(OneCycleBudgetCB):
    "`OneCycleBudgetCB` laid out over a number of training images instead of seconds: the same run on a busy machine."
    def __init__(self, max_lr, images, **kwargs):
        super().__init__(max_lr, float('inf'), **kwargs)
        self.images = images
    def fraction(self): return self.imgs/self.images
    def after_batch(self, learn):
        super().after_batch(learn)   # counts and times the batch (no time limit)
        if learn.training and self.imgs >= self.images: raise CancelFitException()


def train_for(name, r, x, seconds, progress, images=None, lr_sched=True):
    "Train recipe `r` for about `seconds` (or `images`); returns (model, run info, record)."
    set_seed(0)
    cfg, sigma_data = r['cfg'], round(x.std().item(), 4)
    model = tiny_unet(**PRESETS[cfg.preset], zero_init=r['zero_init'])
    dls = DataLoaders.from_tensors((x,), (x[:256],), bs=cfg.bs)
    if not lr_sched: budget = TimeBudgetCB(seconds, warmup=3, min_steps=10)   # --calibrate: the rate only
    elif images is None: budget = OneCycleBudgetCB(cfg.lr, seconds)
    else: budget = OneCycleImagesCB(cfg.lr, images)
    cbs = [DeviceCB(), OBJECTIVE_PARTS[cfg.objective].callback(cfg, sigma_data), TrainCB(n_inp=2), budget]
    learn = Learner(model, dls, F.mse_loss, lr=cfg.lr, cbs=cbs + ([ProgressCB()] if progress else []),
                    opt_func=partial(optim.Adam, eps=r['eps']))
    t0 = time.time(); learn.fit(10_000, valid=False); secs = time.time() - t0
    losses = getattr(budget, 'losses', [])   # none with --calibrate
    mean = lambda v: round(sum(v)/max(1, len(v)), 4)
    rec = dict(recipe=name, train_steps=budget.steps, train_images_per_s=round(budget.images_per_s, 1),
               train_loss_first10=mean(losses[:10]), train_loss_last10=mean(losses[-10:]),
               train_loss_max=round(max(losses, default=0.), 4),
               lr_schedule='one-cycle in wall-clock time' if images is None else f'one-cycle over {images:,} images',
               train_seconds=round(secs, 1), images_seen=budget.steps*cfg.bs, adam_eps=r['eps'],
               zero_init=r['zero_init'], params_m=round(sum(p.numel() for p in model.parameters())/1e6, 2),
               sigma_data=sigma_data, **{k: getattr(cfg, k) for k in ('objective', 'preset', 'schedule', 'n_steps',
                                                                         'lr', 'bs')})
    return model.eval(), RunInfo(Path('.'), cfg, sigma_data, len(x)), rec


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=10.)
    p.add_argument('--n', type=int, default=256)
    p.add_argument('--recipes', nargs='+', default=list(RECIPES), choices=list(RECIPES))
    p.add_argument('--feature', choices=FEATURES, default='shipped', help='FID feature network (default: %(default)s)')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=None)
    p.add_argument('--sampler', choices=list(SAMPLERS), default=None, help="default: each recipe's own (see RECIPES)")
    p.add_argument('--steps', type=int, default=None, help="sampler steps (default: each recipe's own)")
    p.add_argument('--sigma-min', type=float, default=SampleConfig.sigma_min, help='sampler (default: %(default)s)')
    p.add_argument('--sigma-max', type=float, default=SampleConfig.sigma_max, help='sampler (default: %(default)s)')
    p.add_argument('--img-per-s', type=float, default=None,
                   help='train for minutes x this many images (the rate on the idle machine, from --calibrate) '
                        'instead of for the minutes of the clock')
    p.add_argument('--calibrate', type=float, default=None, metavar='SECONDS',
                   help="only measure each recipe's training images/s for this long (run it on the idle machine)")
    p.add_argument('--threads', type=int, default=None, help="torch's CPU threads (default: torch's own choice)")
    p.add_argument('--adam-eps', type=float, default=None,
                   help="Adam's eps for every recipe (default: each recipe's own; the course's lesson 15 keeps "
                        "PyTorch's 1e-8, and later lessons use 1e-5)")
    a = p.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    x, _ = diffusion_data()
    if a.calibrate: return calibrate(a, x)
    ie = image_eval(a.feature)
    rows, grids = [], {}
    for name in a.recipes:
        r = RECIPES[name] if a.adam_eps is None else {**RECIPES[name], 'eps': a.adam_eps}
        sampler, steps = a.sampler or r['sampler'], a.steps or r['steps']
        images = None if a.img_per_s is None else round(a.minutes*60*a.img_per_s)
        model, info, rec = train_for(name, r, x, a.minutes*60, a.progress, images=images)
        if images is not None:
            rec.update(minutes=a.minutes, img_per_s_idle=a.img_per_s, threads=torch.get_num_threads())
        t0 = time.time()
        s = generate(model, info, sampler=sampler, steps=steps, n=a.n, seed=0, progress=a.progress,
                     sigma_min=a.sigma_min, sigma_max=a.sigma_max)
        rec.update(sampler=sampler, steps=steps, nfe=nfe(sampler, steps), sigma_min=a.sigma_min, sigma_max=a.sigma_max,
                   sample_seconds=round(time.time() - t0, 1), **ie.evaluate(s))
        print(f"{name:7s} {rec['train_steps']} steps in {rec['train_seconds']:.0f}s, {sampler} ({rec['nfe']} NFE) "
              f"in {rec['sample_seconds']:.0f}s: FID {rec['fid']:.2f} KID {rec['kid']:.4f} (N={a.n})", flush=True)
        rows.append(rec); grids[name] = s[:32]
        write(a, rows, complete=len(rows) == len(a.recipes))  # after each recipe, so a crash keeps what was measured
    plot(a, rows, grids)


def calibrate(a, x):
    "Print and record each recipe's training images/s (its rate only: no lr schedule, no sampling)."
    rows = []
    for name in a.recipes:
        _, _, rec = train_for(name, RECIPES[name], x, a.calibrate, a.progress, lr_sched=False)
        print(f"{name}: {rec['train_images_per_s']:.1f} training images/s with {torch.get_num_threads()} thread(s), "
              f"load {os.getloadavg()[0]:.2f} at the end", flush=True)
        rows.append(dict(recipe=name, threads=torch.get_num_threads(), img_per_s=rec['train_images_per_s'],
                         seconds=rec['train_seconds'], load_avg_1min=round(os.getloadavg()[0], 2)))
    if a.out: print(f"wrote {write_json(Path(a.out), dict(calibration=rows))}")


def write(a, rows, complete):
    res = dict(minutes=a.minutes, n=a.n, feature=a.feature, complete=complete, rows=rows)
    if len(rows) == 2: res['fid_ratio_miniai_over_course'] = round(rows[1]['fid']/rows[0]['fid'], 3)
    print(f"wrote {write_json(out_path(a), res)}", flush=True)


def out_path(a): return Path(a.out or RESULTS/f'quality_per_minute_{def_device.type}.json')


def plot(a, rows, grids):
    out = out_path(a)
    fig, axs = plt.subplots(1, len(grids), figsize=(5*len(grids), 3))
    for ax, (name, g) in zip(axs if len(grids) > 1 else [axs], grids.items()):
        k = min(32, len(g)); nc = min(8, k); nr = -(-k//nc)
        g = torch.cat([g[:k], g.new_full((nr*nc - k, *g.shape[1:]), -1.)])
        grid = ((g + 1)/2).view(nr, nc, 32, 32).permute(0, 2, 1, 3).reshape(nr*32, nc*32)
        ax.imshow(grid, cmap='gray', vmin=0, vmax=1); ax.axis('off')
        rr = next(o for o in rows if o['recipe'] == name)
        when = (f"{rr['train_seconds']/60:.1f} min" if 'minutes' not in rr else   # an image budget: the idle minutes
                f"{rr['images_seen']:,} images ({rr['minutes']:g} idle min)")
        ax.set_title(f"{name}: {when}, FID {rr['fid']:.1f} (N={a.n})", fontsize=9)
    fig.tight_layout(); fig.savefig(out.with_suffix('.png'), dpi=100)
    print(f"wrote {out.with_suffix('.png')}")

if __name__ == '__main__': main()
