"""Issue 22, part 2: FID against training minutes on the 2-core CPU, one lever at a time.

Trains a Karras-preconditioned U-Net on all 60,000 Fashion-MNIST images (32x32, [-1, 1]) with a learning-rate schedule
that does not depend on the length of the run (linear warm-up, then lr_max/sqrt(step/t_ref): EDM2's inverse-square-root
decay), so that ONE run gives the whole curve: it saves a snapshot (raw weights and their exponential moving average)
every `--snap-every` training images. `eval` then scores the snapshots nearest to given training minutes.

Minutes are minutes of the idle 2-core machine. `calibrate` times a run's settings on this machine (run it with nothing
else on the machine; it appends to bench/results/quality_calibration.json), and `eval --img-per-s` takes that figure:
a snapshot after I images stands for I/img_per_s/60 minutes, whatever else shared the machine while the run trained
(so two runs can share the machine, one thread each, and still be placed on the idle machine's time axis).

  python bench/quality_curves.py train --name micro_ema --preset micro --max-images 1300000
  python bench/quality_curves.py calibrate --name micro_ema --threads 2
  python bench/quality_curves.py eval --name micro_ema --img-per-s 360 --minutes 10 30 60 --n 2048
  python bench/quality_curves.py eval --run demo_out --img-per-s 360 --n 2048    # a finished `miniai train` run
  python bench/quality_curves.py report     # -> bench/results/quality_curves.json and .png
Run folders live under the ignored runs/: on another machine `report` keeps the repository's rows of the runs that
are not there. The report also plots the course's lesson-15 recipe over the same minutes, from the
bench/results/lesson15_*min*.json that bench/quality_per_minute.py writes (see its docstring), one line per Adam eps.
`train` continues from its last checkpoint when run again (same --name); `eval` keeps the rows it has scored.
"""
import argparse, json, os, shutil, sys, time
from functools import partial
from pathlib import Path

import torch

from miniai.learner import Callback, CancelFitException
from miniai.checkpoint import atomic_save, atomic_write_json, safe_load
from miniai.fid import ImageEval, fid_report
from miniai.settings import LOSS_WEIGHTS, PRESETS, SAMPLER_NAMES, RunConfig, SampleConfig
from miniai.recipes import (EMACB, TrainingStopped, build_model, generate, load_run, nfe, read_run,
                            train as train_run)
from _common import RESULTS, TimeBudgetCB, write_json

RUNS = Path('runs/quality')
CALIB = RESULTS/'quality_calibration.json'   # measured training throughput of each run's settings on the idle machine
LESSON15 = 'lesson15_*min*.json'   # the course's lesson-15 recipe over the same minutes: bench/quality_per_minute.py
COURSE_EPS = 1e-8   # lesson 15's Adam eps (PyTorch's default); `quality_per_minute.py --adam-eps` tries others


class SnapshotCB(Callback):
    "Count training images; save raw and EMA weights every `every` images; stop after `max_images`."
    order = 20
    def __init__(self, folder, every, max_images, bs):
        self.folder, self.every, self.max, self.bs = Path(folder), every, max_images, bs
        self.t0, self.wall = None, 0.
    def state_dict(self): return {'wall': self.wall + (time.time() - self.t0 if self.t0 else 0.)}
    def load_state_dict(self, sd): self.wall = sd['wall']
    def before_fit(self, learn):
        self.t0, self.ema = time.time(), next(cb for cb in learn.cbs if isinstance(cb, EMACB)).ema
    def after_batch(self, learn):
        if not learn.training: return
        seen = learn.train_iter*self.bs  # CheckpointCB (order 0.5) counts training batches in learn.train_iter
        if seen % self.every < self.bs:
            wall = self.wall + time.time() - self.t0
            atomic_save({'model': learn.model.state_dict(), 'ema': self.ema.state_dict(), 'images': seen,
                         'steps': learn.train_iter, 'wall_seconds': round(wall, 1)}, self.folder/f'snap_{seen:08d}.pt')
            print(f'snapshot at {seen:,} images, {wall/60:.1f} min wall, loss {learn.loss.item():.4f}', flush=True)
        if seen >= self.max: raise CancelFitException()


def run_config(a) -> RunConfig:
    "The settings of a `train` run: inverse-sqrt lr and EMA; it stops at `--max-images`, not after its 1,000 epochs."
    return RunConfig(preset=a.preset, bs=a.bs, lr=a.lr, lr_sched='invsqrt', warmup=a.warmup, t_ref=a.t_ref, ema=True,
                     ema_power=a.ema_power, flip=a.flip, p_mean=a.p_mean, p_std=a.p_std, loss_weight=a.loss_weight,
                     seed=a.seed, epochs=1000)


def train(a):
    "One `miniai.recipes` run (inverse-sqrt lr, EMA, optional flips) with snapshots; continues a run that was stopped."
    torch.set_num_threads(a.threads)
    folder, cfg = RUNS/a.name, run_config(a)
    snaps = SnapshotCB(folder, a.snap_every, a.max_images, a.bs)
    try: train_run(cfg, folder, resume=(folder/'checkpoint.pt').exists(), progress=False, cbs=[snaps])
    except TrainingStopped as e:   # its own hint names `miniai train --resume`, which would train on without snapshots
        sys.exit(f"{a.name}: {str(e).split(': resume')[0]}: run the same `quality_curves.py train --name {a.name}` "
                 "command again to continue it.")


def _snapshot_model(path, w):
    "The U-Net of a run's snapshot file with its raw (`w='raw'`) or averaged (`w='ema'`) weights, and the run's info."
    info = read_run(path.parent)
    net = build_model(info.config)
    net.load_state_dict(safe_load(path)['model' if w == 'raw' else 'ema'])
    return net.eval(), info


def idle_rate(name):
    "The fastest measured training throughput of run `name` on the idle machine (images/s), from `calibrate`; or None."
    rows = [r for r in (json.loads(CALIB.read_text()) if CALIB.exists() else []) if r['name'] == name]
    return max((r['img_per_s'] for r in rows), default=None)


def _points(a, folder):
    "(images, weights, loader) to score: snapshots nearest to `--minutes`, or a finished `miniai train` run folder."
    snaps = {int(p.stem.split('_')[1]): p for p in folder.glob('snap_*.pt')}
    if snaps:
        for m in a.minutes:
            target = m*60*a.img_per_s
            images = min(snaps, key=lambda i: abs(i - target))
            if abs(images - target) > 0.05*target:
                print(f'{folder.name}: no snapshot within 5% of {m:g} minutes ({target:,.0f} images; nearest '
                      f'{images:,}): train further, then eval again', flush=True)
                continue
            for w in ('raw', 'ema'): yield images, w, partial(_snapshot_model, snaps[images], w)
    elif (folder/'model.safetensors').exists():   # a whole run of `miniai train`: its final weights (and their EMA)
        info = read_run(folder)
        images = info.config.epochs*info.n_images
        for w in ('raw', 'ema') if info.config.ema else ('raw',):
            yield images, w, partial(load_run, folder, ema=w == 'ema', device='cpu')
    else: sys.exit(f'{folder} has no snapshots and no model.safetensors yet: train first')


@torch.no_grad()
def evaluate(a):
    "Score the snapshots nearest to `--minutes` (raw and EMA weights), or a finished run: FID at N, <= 20 NFE."
    torch.set_num_threads(a.threads)
    folder = Path(a.run) if a.run else RUNS/a.name
    name = a.name or folder.name
    a.img_per_s = a.img_per_s or idle_rate(name)
    if not a.img_per_s:
        sys.exit(f'{name}: no measured throughput: run `python {sys.argv[0]} calibrate --name {name}` on the idle '
                 'machine first, or pass --img-per-s')
    out = Path(a.out or folder/'curve.json')
    res = json.loads(out.read_text()) if out.exists() else {'rows': []}
    done = {(r['images'], r['weights'], r['n'], r['sampler'], r['steps'], *sigma_range(r)) for r in res['rows']}
    ie = None
    for images, w, load in _points(a, folder):
        if w not in a.weights or (images, w, a.n, a.sampler, a.steps, a.sigma_min, a.sigma_max) in done: continue
        net, info = load()
        ie = ie or ImageEval()
        t0 = time.time()
        x = generate(net, info, progress=False, sampler=a.sampler, steps=a.steps, n=a.n, seed=0,
                     sigma_min=a.sigma_min, sigma_max=a.sigma_max)
        r = ie.evaluate(x)
        res['rows'].append(dict(name=name, preset=info.config.preset, images=images,
                                minutes=round(images/a.img_per_s/60, 1), img_per_s=a.img_per_s, weights=w, n=a.n,
                                sampler=a.sampler, steps=a.steps, nfe=nfe(a.sampler, a.steps),
                                sigma_min=a.sigma_min, sigma_max=a.sigma_max, fid=r['fid'],
                                kid=r['kid'], floor=r['floor'], feature_net=r['feature_net'],
                                sample_seconds=round(time.time() - t0, 1)))
        atomic_write_json(out, res)
        print(f"{name} after {images:,} images (~{images/a.img_per_s/60:.0f} idle minutes), {w}, "
              f"{a.sampler}-{a.steps}, σ in [{a.sigma_min:g}, {a.sigma_max:g}]: {fid_report(r)}", flush=True)


CURVE_SIGMAS = (0.01, 80.)   # the noise range every curve was scored with (miniai's default before it became 0.05)


def sigma_range(row) -> tuple[float, float]:
    "The sampler's noise range a row was scored with (rows from before it was recorded: the curves' range)."
    return row.get('sigma_min', CURVE_SIGMAS[0]), row.get('sigma_max', CURVE_SIGMAS[1])


def calibrate(a):
    "Training images per second of a run's settings on this machine now (run it with nothing else on the machine)."
    torch.set_num_threads(a.threads)
    folder = RUNS/f'_calibrate_{a.name}'
    cfg = read_run(RUNS/a.name).config.replace(checkpoint_minutes=1e6)
    if folder.exists(): shutil.rmtree(folder)
    timer = TimeBudgetCB(a.seconds, warmup=a.warmup_batches, min_steps=20)
    try: train_run(cfg, folder, progress=False, cbs=[timer])
    finally: shutil.rmtree(folder, ignore_errors=True)
    print(f'{a.name}: {timer.images_per_s:.1f} training images/s with {a.threads} thread(s), load '
          f'{os.getloadavg()[0]:.2f} at the end')
    out = Path(a.out or CALIB)
    rows = json.loads(out.read_text()) if out.exists() else []
    rows.append(dict(name=a.name, threads=a.threads, img_per_s=round(timer.images_per_s, 1), images=timer.imgs,
                     seconds=round(timer.secs, 1), load_avg_1min=round(os.getloadavg()[0], 2), bs=cfg.bs,
                     preset=cfg.preset))
    atomic_write_json(out, rows)


def series(name: str) -> str:
    "The curve a run belongs to: with a one-cycle schedule each run is one point (its schedule fits its budget)."
    return series_of(read_run(RUNS/name).config)


TRAIN_SEED = 0   # the seed of `train` runs (inverse-sqrt); `miniai train` runs (one-cycle) default to RunConfig's


def series_of(c: RunConfig) -> str:
    "`series` of a run's settings: what differs from the defaults, then the schedule; a seed only if not its maker's."
    d = RunConfig()
    seed = TRAIN_SEED if c.lr_sched == 'invsqrt' else d.seed
    extra = ((', random flips' if c.flip else '') + (f', bs {c.bs}' if c.bs != d.bs else '')
             + (f', lr {c.lr:g}' if c.lr != d.lr else '')
             + (f', ln σ ~ N({c.p_mean:g}, {c.p_std:g}²)' if (c.p_mean, c.p_std) != (d.p_mean, d.p_std) else '')
             + (f', {c.loss_weight} loss weights' if c.loss_weight != d.loss_weight else '')
             + (f', seed {c.seed}' if c.seed != seed else ''))
    return f"{c.preset}{extra}, {ONECYCLE if c.lr_sched == 'onecycle' else INVSQRT}"


ONECYCLE, INVSQRT = 'OneCycle over the budget', 'inverse-sqrt lr'   # the two ways of spending a budget
SCHEDULES = [ONECYCLE, INVSQRT]   # ... in the order of the plot's panels


def schedule(curve: str) -> str:
    "The schedule of a curve named by `series` (rows written before it was shortened included)."
    return ONECYCLE if ONECYCLE in curve else INVSQRT


def setting(curve: str) -> str:
    "A curve's settings without its schedule: `micro, bs 128` of `micro, bs 128, inverse-sqrt lr`."
    return curve[:curve.index(', ' + schedule(curve))]


CURVE_SAMPLING = ('dpmpp_2m', 20, *CURVE_SIGMAS)   # the curves' sampler, steps, σ range; the others: the table


def report(a):
    "Gather every run's rows into bench/results/quality_curves.json and plot FID against idle training minutes."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for p in sorted(RUNS.glob('*/curve.json')) for r in json.loads(p.read_text())['rows']]
    here, out = {r['name'] for r in rows}, RESULTS/'quality_curves.json'
    kept = [r for r in (json.loads(out.read_text())['rows'] if out.exists() else []) if r['name'] not in here]
    if kept:   # run folders live under the ignored runs/: a fresh machine keeps the rows the repository already has
        print(f"kept {len(kept)} rows of {out.name} whose run folders are not here: "
              f"{', '.join(sorted({r['name'] for r in kept}))}")
    if not rows + kept: sys.exit(f'no {RUNS}/*/curve.json yet: run eval first')
    for r in rows:   # minutes on the idle machine's time axis, from the latest calibration of each run's settings
        r['img_per_s'] = idle_rate(r['name']) or r['img_per_s']
        r['minutes'] = round(r['images']/r['img_per_s']/60, 1)
        r['series'] = series(r['name'])
        r['sigma_min'], r['sigma_max'] = sigma_range(r)
    rows += kept
    for r in rows:   # a curve's two parts as fields, so readers of the JSON need not parse names (older: longer)
        r['setting'], r['schedule'] = setting(r['series']), schedule(r['series'])
        r['series'] = f"{r['setting']}, {r['schedule']}"
    calib = json.loads(CALIB.read_text()) if CALIB.exists() else []
    curve_sampling = dict(zip(('sampler', 'steps', 'sigma_min', 'sigma_max'), CURVE_SAMPLING))
    lesson15 = sorted((r for p in RESULTS.glob(LESSON15) for r in json.loads(p.read_text())['rows']),
                      key=lambda r: r['minutes'])
    write_json(RESULTS/'quality_curves.json', dict(rows=rows, schedules=SCHEDULES, lesson15=lesson15,
                                                  calibration=calib, curve_sampling=curve_sampling,
                                                  command='python bench/quality_curves.py report'))
    # two panels, one per way of spending a budget; a colour per setting (the same in both), a line style per weights
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.5), sharey=True)
    panels = dict(zip(SCHEDULES, axes))
    settings = sorted({r['setting'] for r in rows})   # tab10's colours, then their light shades
    colour = {s: plt.cm.tab20(2*i % 20 + i//10 % 2) for i, s in enumerate(settings)}
    scored = [r for r in rows   # other samplers and σ ranges: the tables
              if r['n'] == a.n and (r['sampler'], r['steps'], *sigma_range(r)) == CURVE_SAMPLING]
    for sched, sett, w in sorted({(r['schedule'], r['setting'], r['weights']) for r in scored}):
        pts = sorted((r['minutes'], r['fid']) for r in scored
                     if (r['schedule'], r['setting'], r['weights']) == (sched, sett, w))
        panels[sched].plot(*zip(*pts), 'o-' if w == 'ema' else 's--', color=colour[sett],
                           mfc=None if w == 'ema' else 'w', label=f'{sett}; {w} weights')
    for eps in sorted({r['adam_eps'] for r in lesson15}):
        pts = [(r['minutes'], r['fid']) for r in lesson15 if r['adam_eps'] == eps and r['n'] == a.n
               and (r['sampler'], r['steps'], r['sigma_min'], r['sigma_max']) == CURVE_SAMPLING]
        if pts: axes[0].plot(*zip(*pts), 'kD--' if eps == COURSE_EPS else 'k^', mfc='w',
                             label="the course's lesson-15 recipe (6.75 M parameters, noise prediction), "
                             f"Adam eps {eps:g}{' (the course)' if eps == COURSE_EPS else ''}")
    floor = next(r['floor'] for r in rows if r['n'] == a.n)
    titles = f'{ONECYCLE}: one run per point', f'one long run, {INVSQRT}: its snapshots'
    for ax, title in zip(axes, titles):
        ax.axhline(floor, color='k', ls=':', lw=1, label='real images against the test set')
        ax.plot([60, 120], [10, 5], 'r*', ms=10, label="issue 22's goals: FID 10 at 60 minutes, 5 at 120")
        ax.set(title=title, xlabel='training minutes (idle 2-core CPU)', yscale='log')
        ax.legend(fontsize=7, loc='upper center', bbox_to_anchor=(0.5, -0.1))   # below the axes: the curves stay clear
    axes[0].set_ylabel(f'FID (N = {a.n:,}, shipped network)')
    s, k, lo, hi = CURVE_SAMPLING
    fig.suptitle(f'FID against training minutes; samples by {s}, {k} steps, σ in [{lo:g}, {hi:g}]')
    fig.savefig(RESULTS/'quality_curves.png', dpi=80, bbox_inches='tight')
    print(f"wrote {RESULTS/'quality_curves.json'} ({len(rows)} rows) and {RESULTS/'quality_curves.png'}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(required=True)
    t = sub.add_parser('train')
    t.add_argument('--name', required=True)
    t.add_argument('--preset', default='micro', choices=list(PRESETS))
    t.add_argument('--bs', type=int, default=64)
    t.add_argument('--lr', type=float, default=5e-3)
    t.add_argument('--warmup', type=int, default=200)
    t.add_argument('--t-ref', type=int, default=2000)
    t.add_argument('--ema-power', type=float, default=2/3)
    t.add_argument('--p-mean', type=float, default=-1.2)
    t.add_argument('--p-std', type=float, default=1.2)
    t.add_argument('--flip', action='store_true')
    t.add_argument('--loss-weight', default='edm', choices=LOSS_WEIGHTS, help='weights of the noise levels in the loss')
    t.add_argument('--snap-every', type=int, default=10_000)
    t.add_argument('--max-images', type=int, default=500_000)
    t.add_argument('--threads', type=int, default=1)
    t.add_argument('--seed', type=int, default=TRAIN_SEED)
    t.set_defaults(func=train)
    e = sub.add_parser('eval')
    e.add_argument('--name', help='a run of `train` (runs/quality/NAME)')
    e.add_argument('--run', help='or a finished `miniai train --out` folder (its final weights)')
    e.add_argument('--img-per-s', type=float, help="the idle machine's training throughput for this run (default: the "
                   "fastest `calibrate` figure for it)")
    e.add_argument('--minutes', type=float, nargs='+', default=[10, 30, 60, 120])
    e.add_argument('--n', type=int, default=2048)
    e.add_argument('--sampler', default='dpmpp_2m', choices=SAMPLER_NAMES)
    e.add_argument('--steps', type=int, default=20, help='sampler steps (heun: 2*steps-1 model evaluations)')
    e.add_argument('--sigma-min', type=float, default=CURVE_SIGMAS[0], help="default: the curves' range (miniai "
                   f"samples with {SampleConfig.sigma_min:g} since these runs)")
    e.add_argument('--sigma-max', type=float, default=CURVE_SIGMAS[1])
    e.add_argument('--weights', nargs='+', default=['raw', 'ema'], choices=['raw', 'ema'],
                   help='which weights of each snapshot to score')
    e.add_argument('--threads', type=int, default=2)
    e.add_argument('--out', default=None, help='JSON of the rows (default: runs/quality/NAME/curve.json)')
    e.set_defaults(func=evaluate)
    c = sub.add_parser('calibrate')
    c.add_argument('--name', required=True, help='the run whose settings to time')
    c.add_argument('--threads', type=int, default=2)
    c.add_argument('--warmup-batches', type=int, default=20)
    c.add_argument('--seconds', type=float, default=40., help='timed training seconds after the warm-up')
    c.add_argument('--out', default=None, help=f'JSON to append the figure to (default: {CALIB})')
    c.set_defaults(func=calibrate)
    r = sub.add_parser('report')
    r.add_argument('--n', type=int, default=2048)
    r.set_defaults(func=report)
    return p


def main():
    p = parser()
    a = p.parse_args()
    if a.func is evaluate and not (a.name or a.run): p.error('eval: give --name or --run')
    a.func(a)


if __name__ == '__main__': main()
