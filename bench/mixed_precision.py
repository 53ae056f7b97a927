"""Training throughput and peak memory of the DDPM U-Net in fp32 and with miniai's `MixedPrecision`, on the CPU and on CUDA.

The model is the course's refactored DDPM U-Net: diffusers `UNet2DModel` built from its config (never downloaded),
32x32 one-channel images, block_out_channels (16, 32, 64, 128), norm_num_groups 8, the library's default blocks
(attention in the three lower levels). Each step is a DDPM training step (linear beta 1e-4..0.02, T=1000, random t,
MSE on the noise) through a miniai `Learner` with Adam(eps=1e-5). The images are random: speed does not depend on them.

Each (device, precision) runs in a fresh subprocess, so peak memory is that run's alone: CUDA's max_memory_allocated
after the warm-up steps, or on the CPU the process's peak resident set size (ru_maxrss, which includes Python, torch and
the model: compare it with `rss_before_fit_mb`).

  python bench/mixed_precision.py                                # cpu, and cuda when available; writes bench/mixed_precision.json
  python bench/mixed_precision.py --devices cpu --steps 3        # what fits on a small CPU
  python bench/mixed_precision.py --devices cuda --bs 512 --steps 50 --modes fp32 fp16 bf16
"""
import argparse, json, os, platform, resource, subprocess, sys, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn, optim

DEFAULTS = {'cpu': dict(bs=32, steps=3, warmup=1), 'cuda': dict(bs=512, steps=50, warmup=10)}

def get_unet():
    from diffusers import UNet2DModel
    return UNet2DModel(sample_size=32, in_channels=1, out_channels=1, block_out_channels=(16, 32, 64, 128), norm_num_groups=8)

class EpsModel(nn.Module):
    "The U-Net as a miniai model: `(x_t, t) -> predicted noise`."
    def __init__(self, unet): super().__init__(); self.unet = unet
    def forward(self, x, t): return self.unet(x, t).sample

def ddpm_noise(b, abar):
    "A DDPM training batch (Ho et al. 2020): clean images `x0` -> ((x_t, t), noise); the model learns to predict the noise."
    x0 = b[0]
    t = torch.randint(0, len(abar), (len(x0),), device=x0.device)
    a = abar.to(x0.device)[t].view(-1, 1, 1, 1)
    eps = torch.randn_like(x0)
    return a.sqrt()*x0 + (1 - a).sqrt()*eps, t, eps

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

    class TimerCB(Callback):
        "Wall-clock time of the training batches after the warm-up ones (synchronising CUDA at both ends)."
        order = 100
        def _sync(self):
            if device == 'cuda': torch.cuda.synchronize()
        def before_batch(self, learn):
            if learn.iter == warmup:
                self._sync()
                if device == 'cuda': torch.cuda.reset_peak_memory_stats()
                self.t0 = time.perf_counter()
        def after_batch(self, learn):
            if learn.iter == warmup + steps - 1:
                self._sync()
                self.secs = time.perf_counter() - self.t0

    set_seed(seed)
    n = bs*(warmup + steps)
    x = torch.rand(n, 1, 32, 32)*2 - 1
    dls = DataLoaders.from_tensors((x,), (x[:bs],), bs=bs, shuffle=False, drop_last=True)
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000), 0)
    model = EpsModel(get_unet())
    tcb = TimerCB()
    train_cb = TrainCB(n_inp=2) if mode == 'fp32' else MixedPrecision(mode, n_inp=2)
    cbs = [DeviceCB(device), BatchTransformCB(partial(ddpm_noise, abar=abar)), train_cb, tcb]
    learn = Learner(model, dls, F.mse_loss, lr=1e-3, cbs=cbs, opt_func=partial(optim.Adam, eps=1e-5))
    rss0 = rss_mb()
    learn.fit(1, valid=False)
    res = dict(device=device, mode=mode, bs=bs, steps=steps, warmup=warmup, seconds=round(tcb.secs, 3),
               images_per_s=round(bs*steps/tcb.secs, 2), loss=round(learn.loss.item(), 4),
               n_params=sum(p.numel() for p in model.parameters()))
    if mode != 'fp32': res.update(autocast_dtype=str(train_cb.amp), loss_scaler=train_cb.scaler is not None, skipped_steps=train_cb.n_skipped)
    if device == 'cuda': res['peak_mem_mb'] = round(torch.cuda.max_memory_allocated()/2**20, 1)
    else: res.update(peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024, 1), rss_before_fit_mb=round(rss0, 1))
    return res

def host_info() -> dict:
    info = dict(python=platform.python_version(), torch=torch.__version__, threads=torch.get_num_threads(), platform=platform.platform())
    try: info['cpu'] = next(l.split(':', 1)[1].strip() for l in open('/proc/cpuinfo') if l.startswith('model name'))
    except (OSError, StopIteration): info['cpu'] = platform.processor()
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda, cudnn_allow_tf32=torch.backends.cudnn.allow_tf32,
                    matmul_allow_tf32=torch.backends.cuda.matmul.allow_tf32)
    return info

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--devices', nargs='+', default=None, choices=['cpu', 'cuda'], help='default: cpu, and cuda if available')
    p.add_argument('--modes', nargs='+', default=None, choices=['fp32', 'bf16', 'fp16'],
                   help='default: fp32 bf16 on the CPU, fp32 fp16 bf16 on CUDA')
    p.add_argument('--bs', type=int, default=None, help=f'batch size (default {DEFAULTS["cpu"]["bs"]} on cpu, {DEFAULTS["cuda"]["bs"]} on cuda)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 3 on cpu, 50 on cuda)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default 1 on cpu, 10 on cuda)')
    p.add_argument('--out', type=Path, default=Path(__file__).with_suffix('.json'))
    p.add_argument('--one', nargs=2, metavar=('DEVICE', 'MODE'), help=argparse.SUPPRESS)   # internal: one run, JSON on stdout
    a = p.parse_args(argv)

    if a.one:
        dev, mode = a.one
        print('RESULT ' + json.dumps(run_one(dev, mode, a.bs, a.steps, a.warmup)))
        return
    devices = a.devices or (['cpu', 'cuda'] if torch.cuda.is_available() else ['cpu'])
    if 'cuda' in devices and not torch.cuda.is_available(): sys.exit('--devices cuda: no CUDA device is available here.')
    out = dict(host=host_info(), command=' '.join([Path(sys.executable).name] + sys.argv), results=[])
    if 'cuda' not in devices: out['cuda'] = 'not measured: no GPU in this run'
    for dev in devices:
        d = {k: getattr(a, k) or v for k, v in DEFAULTS[dev].items()}
        for mode in a.modes or (['fp32', 'bf16'] if dev == 'cpu' else ['fp32', 'fp16', 'bf16']):
            cmd = [sys.executable, __file__, '--one', dev, mode, '--bs', str(d['bs']), '--steps', str(d['steps']), '--warmup', str(d['warmup'])]
            r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, 'PYTHONWARNINGS': 'ignore'})
            line = next((l for l in r.stdout.splitlines() if l.startswith('RESULT ')), None)
            if r.returncode != 0 or line is None: sys.exit(f'{dev} {mode} failed:\n{r.stderr[-3000:]}')
            res = json.loads(line[7:])
            out['results'].append(res)
            mem = f"peak {res['peak_mem_mb']} MiB" if dev == 'cuda' else f"peak RSS {res['peak_rss_mb']} MiB (before fit {res['rss_before_fit_mb']})"
            print(f"{dev:4s} {mode:4s} bs {res['bs']:4d}: {res['images_per_s']:9.2f} images/s  {mem}", flush=True)
    for dev in devices:
        base = next((r['images_per_s'] for r in out['results'] if r['device'] == dev and r['mode'] == 'fp32'), None)
        for r in out['results']:
            if r['device'] == dev and base: r['speedup_vs_fp32'] = round(r['images_per_s']/base, 3)
    for r in out['results']:
        if r['mode'] != 'fp32' and 'speedup_vs_fp32' in r: print(f"{r['device']} {r['mode']}: {r['speedup_vs_fp32']:.2f}x fp32's images/s")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + '\n')
    print(f'wrote {a.out}')

if __name__ == '__main__': main()
