"""Benchmark 1 of the main-job issue: training throughput (images/s) of each `miniai train` preset, fp32 and mixed precision.

Each (preset, precision) trains through the same `Learner` and callbacks as `miniai train --objective karras` (miniai.cli:
`build_model`, `objective_cb`, `TrainCB` or `MixedPrecision`, Adam eps 1e-5) on random 32x32 images (speed does not
depend on the pixels). After `--warmup` batches it times batches until `--seconds` have passed (at least `--min-steps`).
Mixed precision means fp16 + GradScaler on CUDA and bf16 autocast on a CPU; a CPU without native bf16 runs it slower
than fp32, which is what the numbers then show.

  python bench/throughput.py                                   # every preset, fp32 and mp, on def_device
  python bench/throughput.py --presets micro tiny --modes fp32 --seconds 10
Writes bench/results/throughput_<device>.json and prints a table.
"""
import argparse, json, sys, platform, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from miniai.core import def_device, set_seed
from miniai.datasets import DataLoaders
from miniai.learner import Learner, Callback, DeviceCB, TrainCB, CancelFitException
from miniai.accel import MixedPrecision
from miniai.cli import PRESETS, build_model, objective_cb


class TimeBudgetCB(Callback):
    "Time the batches after `warmup`; stop the fit once `seconds` have passed and at least `min_steps` were timed."
    order = 100
    def __init__(self, warmup, seconds, min_steps): self.warmup, self.seconds, self.min_steps = warmup, seconds, min_steps
    def _sync(self):
        if def_device.type == 'cuda': torch.cuda.synchronize()
    def before_fit(self, learn): self.n, self.t0, self.imgs = 0, None, 0
    def after_batch(self, learn):
        self._sync()
        self.n += 1
        if self.n == self.warmup: self.t0 = time.perf_counter(); return
        if self.t0 is None: return
        self.imgs += len(learn.batch[0])
        self.secs = time.perf_counter() - self.t0
        if self.secs >= self.seconds and self.n - self.warmup >= self.min_steps: raise CancelFitException()


def run_one(preset, mode, bs, warmup, seconds, min_steps):
    set_seed(0)
    ds = TensorDataset(torch.randn(bs*4, 1, 32, 32))
    endless = RandomSampler(ds, replacement=True, num_samples=bs*1_000_000)   # the time budget ends the epoch
    dls = DataLoaders(DataLoader(ds, bs, sampler=endless), DataLoader(ds, bs))
    cfg = dict(objective='karras', sigma_data=0.66)
    timer = TimeBudgetCB(warmup, seconds, min_steps)
    trainer = MixedPrecision(n_inp=2) if mode == 'mp' else TrainCB(n_inp=2)
    learn = Learner(build_model('karras', preset), dls, F.mse_loss, lr=1e-3, cbs=[DeviceCB(), objective_cb(cfg), trainer, timer],
                    opt_func=partial(optim.Adam, eps=1e-5))
    learn.fit(1, valid=False)
    amp = getattr(trainer, 'amp', None)
    return dict(preset=preset, mode=mode, dtype=str(amp or torch.float32).replace('torch.', ''), bs=bs,
                params_m=round(sum(p.numel() for p in learn.model.parameters())/1e6, 2),
                timed_images=timer.imgs, seconds=round(timer.secs, 2), images_per_s=round(timer.imgs/timer.secs, 1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--presets', nargs='+', default=list(PRESETS), choices=list(PRESETS))
    p.add_argument('--modes', nargs='+', default=['fp32', 'mp'], choices=['fp32', 'mp'])
    p.add_argument('--bs', type=int, default=None, help='batch size (default: 64 on a CPU, 512 on CUDA)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--seconds', type=float, default=15.)
    p.add_argument('--min-steps', type=int, default=3)
    p.add_argument('--out', default=None)
    a = p.parse_args()
    bs = a.bs or (512 if def_device.type == 'cuda' else 64)
    rows = []
    for pr in a.presets:
        for m in a.modes:
            r = run_one(pr, m, bs, a.warmup, a.seconds, a.min_steps)
            print(f"{r['preset']:7s} {r['mode']:4s} ({r['dtype']:8s}) {r['params_m']:5.2f}M params  bs {bs}: {r['images_per_s']:8.1f} images/s", flush=True)
            rows.append(r)
    res = dict(device=str(def_device), gpu=torch.cuda.get_device_name() if def_device.type == 'cuda' else None,
               cpu_threads=torch.get_num_threads(), machine=platform.machine(), torch=torch.__version__,
               command=' '.join(['python', *sys.argv]), rows=rows)
    out = Path(a.out or Path(__file__).parent/'results'/f'throughput_{def_device.type}.json')
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f'wrote {out}')

if __name__ == '__main__': main()
