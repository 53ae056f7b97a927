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
import argparse, json, math, platform, sys, time
from copy import deepcopy
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim

from miniai.core import set_seed
from miniai.datasets import DataLoaders, fashion_mnist_tensors
from miniai.learner import Learner, Callback, DeviceCB, TrainCB, CancelFitException
from miniai.checkpoint import CheckpointCB
from miniai.karras import KarrasCB, tiny_unet

PRESETS = {
    'micro': dict(nfs=(16, 32, 64), layers_per_block=1, groups=8, attn=False),
    'tiny': dict(nfs=(32, 64, 128), layers_per_block=1, groups=8, attn=False),
    'micro2': dict(nfs=(16, 32, 64), layers_per_block=2, groups=8, attn=False),
}
RUNS = Path('runs/quality')


def ema_decay(step, power=2/3, max_decay=0.9999):
    "EMA decay with a warm-up: 1 - (1 + step)^-power, so early averages are short and later ones long."
    return min(max_decay, 1 - (1 + step)**-power)


class EMACB(Callback):
    "Keep an exponential moving average of the model's weights, updated after every optimiser step."
    order = 10
    def __init__(self, power=2/3): self.power, self.ema, self.steps = power, None, 0
    def before_fit(self, learn):
        if self.ema is None: self.ema = deepcopy(learn.model).eval().requires_grad_(False)
    @torch.no_grad()
    def after_step(self, learn):
        d = ema_decay(self.steps, self.power)
        for e, p in zip(self.ema.parameters(), learn.model.parameters()): e.lerp_(p, 1 - d)
        for e, b in zip(self.ema.buffers(), learn.model.buffers()): e.copy_(b)
        self.steps += 1
    def state_dict(self): return {'ema': self.ema.state_dict(), 'steps': self.steps}
    def load_state_dict(self, sd):
        self.ema.load_state_dict(sd['ema']); self.steps = sd['steps']


class InvSqrtLR(Callback):
    "lr = lr_max * min(step/warmup, 1) / sqrt(max(step/t_ref, 1)) (EDM2's schedule, with a linear warm-up)."
    order = 5
    def __init__(self, lr_max, warmup=200, t_ref=2000): self.lr_max, self.warmup, self.t_ref = lr_max, warmup, t_ref
    def before_batch(self, learn):
        if not learn.training: return
        s = learn.train_iter + 1
        lr = self.lr_max*min(s/self.warmup, 1)/math.sqrt(max(s/self.t_ref, 1))
        for g in learn.opt.param_groups: g['lr'] = lr


class SnapshotCB(Callback):
    "Count training images; save raw and EMA weights every `every` images; stop after `max_images`."
    order = 20
    def __init__(self, folder, every, max_images, ema_cb, bs):
        self.folder, self.every, self.max, self.ema_cb, self.bs = Path(folder), every, max_images, ema_cb, bs
        self.t0, self.wall = None, 0.
    def state_dict(self): return {'wall': self.wall + (time.time() - self.t0 if self.t0 else 0.)}
    def load_state_dict(self, sd): self.wall = sd['wall']
    def before_fit(self, learn): self.t0 = time.time()
    def after_batch(self, learn):
        if not learn.training: return
        seen = learn.train_iter*self.bs  # CheckpointCB (order 0.5) counts training batches in learn.train_iter
        if seen % self.every < self.bs:
            wall = self.wall + time.time() - self.t0
            torch.save({'model': learn.model.state_dict(), 'ema': self.ema_cb.ema.state_dict(), 'images': seen,
                        'steps': learn.train_iter, 'wall_seconds': round(wall, 1)}, self.folder/f'snap_{seen:08d}.pt')
            print(f'snapshot at {seen:,} images, {wall/60:.1f} min wall, loss {learn.loss.item():.4f}', flush=True)
        if seen >= self.max: raise CancelFitException()


def train(a):
    torch.set_num_threads(a.threads)
    folder = RUNS/a.name; folder.mkdir(parents=True, exist_ok=True)
    cfg = dict(vars(a)); cfg.pop('func')
    cfg_path = folder/'config.json'
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        diff = {k: (old.get(k), v) for k, v in cfg.items() if k not in ('max_images', 'threads') and old.get(k) != v}
        if diff: sys.exit(f'{folder} was trained with other settings {diff}; use another --name')
    cfg_path.write_text(json.dumps(cfg, indent=1))
    set_seed(a.seed)
    d = fashion_mnist_tensors(pad=True, scaling='-11')
    x = d['train'][0]
    sigma_data = round(x.std().item(), 4)
    dls = DataLoaders.from_tensors((x,), (x[:256],), bs=a.bs)
    model = tiny_unet(**PRESETS[a.preset], zero_init=True)
    ema = EMACB(a.ema_power)
    cbs = [DeviceCB(), KarrasCB(sigma_data, p_mean=a.p_mean, p_std=a.p_std), TrainCB(n_inp=2),
           InvSqrtLR(a.lr, a.warmup, a.t_ref), ema, SnapshotCB(folder, a.snap_every, a.max_images, ema, a.bs),
           CheckpointCB(folder/'checkpoint.pt', resume=(folder/'checkpoint.pt').exists(), every_minutes=10)]
    if a.flip: cbs.insert(1, FlipCB())
    learn = Learner(model, dls, F.mse_loss, lr=a.lr, cbs=cbs, opt_func=partial(optim.Adam, eps=1e-5))
    print(f'{a.name}: {sum(p.numel() for p in model.parameters()):,} parameters, sigma_data {sigma_data}, '
          f'{torch.get_num_threads()} thread(s)', flush=True)
    learn.fit(1000, valid=False)


class FlipCB(Callback):
    "Mirror each training image left-right with probability 1/2 (before the noise is added)."
    order = DeviceCB.order + 0.5
    def before_batch(self, learn):
        x = learn.batch[0]
        flip = torch.rand(len(x), 1, 1, 1, device=x.device) < 0.5
        learn.batch = (torch.where(flip, x.flip(-1), x), *learn.batch[1:])


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
    a = p.parse_args()
    a.func(a)


if __name__ == '__main__': main()
