"""Training throughput and peak memory of the DDPM U-Net in fp32 and with miniai's `MixedPrecision`, on CPU and CUDA.

The model is the course's refactored DDPM U-Net: diffusers `UNet2DModel` built from its config (never downloaded),
32x32 one-channel images, block_out_channels (16, 32, 64, 128), norm_num_groups 8, the library's default blocks
(attention in the three lower levels). Each step is a DDPM training step (linear beta 1e-4..0.02, T=1000, random t,
MSE on the noise) through a miniai `Learner` with Adam(eps=1e-5). The images are random: speed does not depend on them.

Each (device, precision) runs in a fresh subprocess, so peak memory is that run's alone: CUDA's max_memory_allocated
after the warm-up steps, or on the CPU the process's peak resident set size (ru_maxrss, which includes Python, torch and
the model: compare it with `rss_before_fit_mb`).

  python bench/mixed_precision.py                # cpu, and cuda if available; writes bench/mixed_precision.json
  python bench/mixed_precision.py --devices cpu --steps 3        # what fits on a small CPU
  python bench/mixed_precision.py --devices cuda --bs 512 --steps 50 --modes fp32 fp16 bf16
"""
import argparse, json, os, resource, subprocess, sys, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim

from _common import machine, sync, write_json

DEFAULTS = {'cpu': dict(bs=32, steps=3, warmup=1), 'cuda': dict(bs=512, steps=50, warmup=10)}

def get_unet():
    "The course's refactored DDPM U-Net as miniai's `UNet`, a network called `net(x_t, t)` -> predicted noise."
    from miniai.ddpm_v2 import UNet
    return UNet(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64, 128), norm_num_groups=8)

def rss_mb() -> float:
    "Current resident set size of this process, in MiB."
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'): return int(line.split()[1])/1024
    return float('nan')

def run_one(device: str, mode: str, bs: int, steps: int, warmup: int, seed: int = 0) -> dict:
    "Time `steps` training steps (after `warmup`) at `mode` ('fp32', 'bf16' or 'fp16') on `device`."
    from miniai.core import set_seed
    from miniai.learner import Learner, TrainCB, DeviceCB, BatchTransformCB, Callback
    from miniai.accel import MixedPrecision
    from miniai.datasets import DataLoaders
    from miniai.ddpm_v2 import linear_sched
    from miniai.recipes import ddpm_batch

    class TimerCB(Callback):
        "Wall-clock time of the training batches after the warm-up ones (synchronising CUDA at both ends)."
        order = 100
        def before_batch(self, learn):
            if learn.iter == warmup:
                sync(device)
                if device == 'cuda': torch.cuda.reset_peak_memory_stats()
                self.t0 = time.perf_counter()
        def after_batch(self, learn):
            if learn.iter == warmup + steps - 1:
                sync(device)
                self.secs = time.perf_counter() - self.t0

    set_seed(seed)
    n = bs*(warmup + steps)
    x = torch.rand(n, 1, 32, 32)*2 - 1
    dls = DataLoaders.from_tensors((x,), (x[:bs],), bs=bs, shuffle=False, drop_last=True)
    model = get_unet()
    tcb = TimerCB()
    train_cb = TrainCB(n_inp=2) if mode == 'fp32' else MixedPrecision(mode, n_inp=2)
    noisify = BatchTransformCB(partial(ddpm_batch, alphabar=linear_sched().alphabar))   # (x0,) -> (x_t, t, ε)
    cbs = [DeviceCB(device), noisify, train_cb, tcb]
    learn = Learner(model, dls, F.mse_loss, lr=1e-3, cbs=cbs, opt_func=partial(optim.Adam, eps=1e-5))
    rss0 = rss_mb()
    learn.fit(1, valid=False)
    res = dict(device=device, mode=mode, bs=bs, steps=steps, warmup=warmup, seconds=round(tcb.secs, 3),
               images_per_s=round(bs*steps/tcb.secs, 2), loss=round(learn.loss.item(), 4),
               n_params=sum(p.numel() for p in model.parameters()))
    if mode != 'fp32':
        res.update(autocast_dtype=str(train_cb.amp), loss_scaler=train_cb.scaler is not None,
                   skipped_steps=train_cb.n_skipped)
    if device == 'cuda': res['peak_mem_mb'] = round(torch.cuda.max_memory_allocated()/2**20, 1)
    else:
        res.update(peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, 1),
                   rss_before_fit_mb=round(rss0, 1))
    return res

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--devices', nargs='+', default=None, choices=['cpu', 'cuda'],
                   help='default: cpu, and cuda if available')
    p.add_argument('--modes', nargs='+', default=None, choices=['fp32', 'bf16', 'fp16'],
                   help='default: fp32 bf16 on the CPU, fp32 fp16 bf16 on CUDA')
    p.add_argument('--bs', type=int, default=None,
                   help=f'batch size (default {DEFAULTS["cpu"]["bs"]} on cpu, {DEFAULTS["cuda"]["bs"]} on cuda)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 3 on cpu, 50 on cuda)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 1 on cpu, 10 on cuda)')
    p.add_argument('--out', type=Path, default=Path(__file__).with_suffix('.json'))
    p.add_argument('--one', nargs=2, metavar=('DEVICE', 'MODE'), help=argparse.SUPPRESS)   # internal: one run, JSON out
    a = p.parse_args(argv)

    if a.one:
        dev, mode = a.one
        print('RESULT ' + json.dumps(run_one(dev, mode, a.bs, a.steps, a.warmup)))
        return
    devices = a.devices or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if 'cuda' in devices and not torch.cuda.is_available():
        sys.exit('--devices cuda: no CUDA device is available here.')
    out = dict(results=[], machine=machine('cuda' if 'cuda' in devices else 'cpu'))
    if 'cuda' in devices:
        out['machine'].update(cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                              matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    else: out['cuda'] = 'not measured: no GPU in this run'
    for dev in devices:
        d = {k: getattr(a, k) or v for k, v in DEFAULTS[dev].items()}
        for mode in a.modes or (['fp32', 'bf16'] if dev == 'cpu' else ['fp32', 'fp16', 'bf16']):
            cmd = [sys.executable, __file__, '--one', dev, mode, '--bs', str(d['bs']), '--steps', str(d['steps']),
                   '--warmup', str(d['warmup'])]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
            line = next((ln for ln in r.stdout.splitlines() if ln.startswith('RESULT ')), None)
            if r.returncode != 0 or line is None: sys.exit(f'{dev} {mode} failed:\n{r.stderr[-3000:]}')
            res = json.loads(line[7:])
            out['results'].append(res)
            mem = (f"peak {res['peak_mem_mb']} MiB" if dev == 'cuda' else
                   f"peak RSS {res['peak_rss_mb']} MiB (before fit {res['rss_before_fit_mb']})")
            print(f"{dev:4s} {mode:4s} bs {res['bs']:4d}: {res['images_per_s']:9.2f} images/s  {mem}", flush=True)
    for dev in devices:
        base = next((r['images_per_s'] for r in out['results'] if r['device'] == dev and r['mode'] == 'fp32'), None)
        for r in out['results']:
            if r['device'] == dev and base: r['speedup_vs_fp32'] = round(r['images_per_s']/base, 3)
    for r in out['results']:
        if r['mode'] != 'fp32' and 'speedup_vs_fp32' in r:
            print(f"{r['device']} {r['mode']}: {r['speedup_vs_fp32']:.2f}x fp32's images/s")
    write_json(a.out, out)
    print(f'wrote {a.out}')

if __name__ == '__main__': main()
