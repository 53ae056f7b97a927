"""Benchmark 1 of the main-job issue: training throughput (images/s) of each `miniai train` preset, fp32 and mixed
precision.

Each (preset, precision) trains through the same parts as `miniai train --objective karras` (miniai.recipes:
`build_model`, the objective's callback from `OBJECTIVE_PARTS`, `TrainCB` or `MixedPrecision`, Adam eps 1e-5) on random
32x32 images (speed does not depend on the pixels). After `--warmup` batches it times batches until `--seconds` have
passed (at least `--min-steps`). Mixed precision means fp16 + GradScaler on CUDA and bf16 autocast on a CPU; a CPU
without native bf16 runs it slower than fp32, which is what the numbers then show.

  python bench/throughput.py                                   # every preset, fp32 and mp, on def_device
  python bench/throughput.py --presets micro tiny --modes fp32 --seconds 10
  python bench/throughput.py --presets micro tiny --modes fp32 --variants eager channels_last compile --threads 1 2 \
      --out bench/results/throughput_cpu_variants.json          # issue 22's throughput levers, on the idle machine
`--variants`: eager (the default), channels_last (weights and activations in NHWC), compile (`torch.compile`, default
inductor backend; its compile time falls in the warm-up, which is then 5 batches), compile_cl (both).
Writes bench/results/throughput_<device>.json and prints a table.
"""
import argparse
from functools import partial

import torch
import torch.nn.functional as F
from torch import optim
from torch.utils.data import DataLoader, RandomSampler, TensorDataset

from miniai.core import def_device, set_seed
from miniai.datasets import DataLoaders
from miniai.learner import Learner, DeviceCB, TrainCB
from miniai.accel import MixedPrecision
from miniai.settings import PRESETS, RunConfig
from miniai.recipes import OBJECTIVE_PARTS, build_model
from _common import RESULTS, TimeBudgetCB, write_json

MODES = {'fp32': None, 'mp': None, 'fp16': 'fp16', 'bf16': 'bf16'}   # mp: the device's default 16-bit type
VARIANTS = ('eager', 'channels_last', 'compile', 'compile_cl')


def _variant(model, variant):
    "`model` in memory layout and execution mode `variant` (a name in VARIANTS)."
    if variant not in VARIANTS: raise ValueError(f'unknown variant {variant!r}: choose from {VARIANTS}')
    if variant in ('channels_last', 'compile_cl'): model = model.to(memory_format=torch.channels_last)
    return torch.compile(model) if variant.startswith('compile') else model


def run_one(preset, mode, bs, warmup, seconds, min_steps, device=None, variant='eager') -> dict:
    "Images/s of training `preset` (karras objective) at `mode` (a MODES key) and `variant` on `device`, random images."
    device = torch.device(device or def_device)
    if variant.startswith('compile'): warmup = max(warmup, 5)
    set_seed(0)
    ds = TensorDataset(torch.randn(bs*4, 1, 32, 32))
    endless = RandomSampler(ds, replacement=True, num_samples=bs*1_000_000)   # the time budget ends the epoch
    dls = DataLoaders(DataLoader(ds, bs, sampler=endless), DataLoader(ds, bs))
    cfg = RunConfig(preset=preset)
    timer = TimeBudgetCB(seconds, warmup, min_steps, device)
    trainer = TrainCB(n_inp=2) if mode == 'fp32' else MixedPrecision(MODES[mode], n_inp=2)
    cbs = [DeviceCB(device), OBJECTIVE_PARTS['karras'].callback(cfg, 0.66), trainer, timer]
    learn = Learner(_variant(build_model(cfg), variant), dls, F.mse_loss, lr=1e-3, cbs=cbs,
                    opt_func=partial(optim.Adam, eps=1e-5))
    learn.fit(1, valid=False)
    amp = getattr(trainer, 'amp', None)
    return dict(preset=preset, mode=mode, variant=variant, threads=torch.get_num_threads(),
                dtype=str(amp or torch.float32).replace('torch.', ''), bs=bs,
                params_m=round(sum(p.numel() for p in learn.model.parameters())/1e6, 2), timed_images=timer.imgs,
                seconds=round(timer.secs, 2), images_per_s=round(timer.images_per_s, 1),
                skipped_steps=getattr(trainer, 'n_skipped', 0))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--presets', nargs='+', default=list(PRESETS), choices=list(PRESETS))
    p.add_argument('--modes', nargs='+', default=['fp32', 'mp'], choices=list(MODES),
                   help='mp: fp16 on CUDA, bf16 on a CPU; fp16, bf16: that type')
    p.add_argument('--bs', type=int, default=None, help='batch size (default: 64 on a CPU, 512 on CUDA)')
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--seconds', type=float, default=15.)
    p.add_argument('--min-steps', type=int, default=3)
    p.add_argument('--variants', nargs='+', default=['eager'], choices=VARIANTS)
    p.add_argument('--threads', nargs='+', type=int, default=None, help='CPU threads to try (default: torch\'s)')
    p.add_argument('--out', default=None)
    a = p.parse_args()
    bs = a.bs or (512 if def_device.type == 'cuda' else 64)
    rows = []
    for th in a.threads or [torch.get_num_threads()]:
        torch.set_num_threads(th)
        for pr in a.presets:
            for m in a.modes:
                for v in a.variants:
                    r = run_one(pr, m, bs, a.warmup, a.seconds, a.min_steps, variant=v)
                    print(f"{r['preset']:7s} {r['mode']:4s} ({r['dtype']:8s}) {v:13s} {th} threads "
                          f"{r['params_m']:5.2f}M params  bs {bs}: {r['images_per_s']:8.1f} images/s", flush=True)
                    rows.append(r)
    out = write_json(a.out or RESULTS/f'throughput_{def_device.type}.json', dict(rows=rows))
    print(f'wrote {out}')

if __name__ == '__main__': main()
