"""Issue 22, part 2: FID against training minutes on the 2-core CPU, one lever at a time.

Trains a Karras-preconditioned U-Net on all 60,000 Fashion-MNIST images (32x32, [-1, 1]) with a learning-rate schedule
that does not depend on the length of the run (linear warm-up, then lr_max/sqrt(step/t_ref): EDM2's inverse-square-root
decay), so that ONE run gives the whole curve: it saves a snapshot (raw weights and their exponential moving average)
every `--snap-every` training images. `eval` then scores the snapshots nearest to given training minutes.

Minutes are minutes of the idle 2-core machine: `--img-per-s` is that machine's measured training throughput for the
run's settings (bench/throughput.py), so a snapshot after I images stands for I/img_per_s/60 minutes, whatever else
shared the machine while the run trained (several runs can then share it, each on one thread).

  python bench/quality_curves.py train --name micro_ema --preset micro --max-images 500000
  python bench/quality_curves.py eval --name micro_ema --img-per-s 133 --minutes 10 30 60 --n 2048
The training part continues from its last checkpoint when run again (same --name); eval keeps finished rows.
"""
import argparse, json, sys, time
from pathlib import Path

import torch

from miniai.learner import Callback, CancelFitException
from miniai.checkpoint import atomic_save, atomic_write_json, safe_load
from miniai.fid import ImageEval, fid_report
from miniai.denoisers import KarrasDenoiser
from miniai.samplers import sample_dpmpp_2m
from miniai.karras import sigmas_karras
from miniai.settings import PRESETS, RunConfig
from miniai.recipes import EMACB, build_model, read_run, train as train_run

RUNS = Path('runs/quality')


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


def train(a):
    "One `miniai.recipes` run (inverse-sqrt lr, EMA, optional flips) with snapshots; continues a run that was stopped."
    torch.set_num_threads(a.threads)
    folder = RUNS/a.name
    cfg = RunConfig(preset=a.preset, bs=a.bs, lr=a.lr, lr_sched='invsqrt', warmup=a.warmup, t_ref=a.t_ref, ema=True,
                    ema_power=a.ema_power, flip=a.flip, p_mean=a.p_mean, p_std=a.p_std, seed=a.seed, epochs=1000)
    snaps = SnapshotCB(folder, a.snap_every, a.max_images, a.bs)
    train_run(cfg, folder, resume=(folder/'checkpoint.pt').exists(), progress=False, cbs=[snaps])


@torch.no_grad()
def evaluate(a):
    "Score the snapshot nearest to each of `--minutes` (raw and EMA weights): FID at N with DPM-Solver++(2M)."
    torch.set_num_threads(a.threads)
    folder = RUNS/a.name
    snaps = {int(p.stem.split('_')[1]): p for p in folder.glob('snap_*.pt')}
    if not snaps: sys.exit(f'{folder} has no snapshots yet: train first (python {sys.argv[0]} train --name {a.name})')
    info = read_run(folder)
    preset, sigma_data = info.config.preset, info.sigma_data
    out = Path(a.out or folder/'curve.json')
    res = json.loads(out.read_text()) if out.exists() else {'rows': []}
    done = {(r['images'], r['weights'], r['n'], r['steps']) for r in res['rows']}
    ie = ImageEval()
    for m in a.minutes:
        images = min(snaps, key=lambda i: abs(i - m*60*a.img_per_s))
        for w in ('raw', 'ema'):
            if (images, w, a.n, a.steps) in done: continue
            sd = safe_load(snaps[images])
            net = build_model(RunConfig(preset=preset))
            net.load_state_dict(sd['model' if w == 'raw' else 'ema'])
            D = KarrasDenoiser(net.eval(), sigma_data)
            g = torch.Generator().manual_seed(0)
            xs = [sample_dpmpp_2m(D, torch.randn(min(256, a.n - i), 1, 32, 32, generator=g)*80., sigmas_karras(a.steps),
                                  progress=False) for i in range(0, a.n, 256)]
            r = ie.evaluate(torch.cat(xs).clamp(-1, 1))
            res['rows'].append(dict(name=a.name, preset=preset, images=images, minutes=round(images/a.img_per_s/60, 1),
                                    weights=w, n=a.n, steps=a.steps, nfe=a.steps, fid=r['fid'], kid=r['kid'],
                                    floor=r['floor'], feature_net=r['feature_net']))
            atomic_write_json(out, res)
            print(f"{a.name} after {images:,} images (~{images/a.img_per_s/60:.0f} idle minutes), {w}: {fid_report(r)}",
                  flush=True)


def main():
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
    t.add_argument('--snap-every', type=int, default=10_000)
    t.add_argument('--max-images', type=int, default=500_000)
    t.add_argument('--threads', type=int, default=1)
    t.add_argument('--seed', type=int, default=0)
    t.set_defaults(func=train)
    e = sub.add_parser('eval')
    e.add_argument('--name', required=True)
    e.add_argument('--img-per-s', type=float, required=True, help="the idle machine's training throughput for this run")
    e.add_argument('--minutes', type=float, nargs='+', default=[10, 30, 60, 120])
    e.add_argument('--n', type=int, default=2048)
    e.add_argument('--steps', type=int, default=20, help='DPM-Solver++(2M) steps (= model evaluations)')
    e.add_argument('--threads', type=int, default=2)
    e.add_argument('--out', default=None, help='JSON of the rows (default: runs/quality/NAME/curve.json)')
    e.set_defaults(func=evaluate)
    a = p.parse_args()
    a.func(a)


if __name__ == '__main__': main()
