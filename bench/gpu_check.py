"""Is miniai ready for a GPU? Its CUDA and mixed-precision paths checked, the GPU's speed measured (issue 22, part 3).

On a CUDA machine (`make gpu-check`, a few minutes):
- fit: a few training steps of the `course` U-Net (Karras objective, real images) in fp32, fp16 with a GradScaler and
  bf16 (`MixedPrecision`), and through `AccelerateCB` in the device's default 16-bit type: every loss finite, the loss
  falling, steps skipped by the scaler only while it calibrates (never all of them). A non-finite loss is traced to
  the step and the first module whose output overflowed. fp16 counts towards the verdict only where it is the default
  (GPUs without bf16); elsewhere its result is reported (on an H200 the course U-Net overflows fp16: see 07_accel);
- sampling on CUDA (DPM-Solver++(2M) and DDIM) gives finite images close to the CPU's from the same weights and noise;
- checkpoint: a run saved on the GPU (with its GradScaler) resumes on the CPU with the same weights; a `miniai train`
  run folder trained on the GPU samples on the CPU;
- speed: training images/s of the `micro` (the demo's) and `tiny` presets in fp32 and mixed precision (their ratio),
  sampling images/s;
- with --notebooks, the CI-scale notebooks that train, run on the GPU.
Writes bench/results/gpu_check.json; exits 1 if a check failed.

Without CUDA, or with --dry-run, the same code runs on the CPU at toy size: a test of this script, whose figures are
CPU figures (the JSON and the output say so), written to bench/results/gpu_check_dry_run.json.

  .venv/bin/python bench/gpu_check.py                 # on a GPU machine (make gpu-check)
  .venv/bin/python bench/gpu_check.py --dry-run       # anywhere, about a minute on 2 CPU cores
"""
import argparse, contextlib, math, os, shutil, subprocess, sys, tempfile, time, traceback, warnings
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim

from miniai.core import set_seed
from miniai.datasets import DataLoaders
from miniai.learner import Learner, Callback, CancelFitException, DeviceCB, TrainCB
from miniai.accel import MixedPrecision, AccelerateCB, amp_dtype, default_amp
from miniai.checkpoint import CheckpointCB, safe_load, save_weights, load_weights
from miniai.ddpm_v2 import tiny_unet
from miniai.settings import PRESETS, recipe
from miniai.recipes import OBJECTIVE_PARTS, RunInfo, diffusion_data, generate, load_run, train
from _common import RESULTS, machine, sync, write_json
from throughput import run_one

# what each check trains and times, on a GPU and in a dry run (toy sizes, so that CI can run it)
SIZES = {
    'gpu': dict(net=PRESETS['course'], bs=128, steps=60, sample_steps=20, speed_bs=512, speed_seconds=8.,
                speed_warmup=5, n_sample=1024, run_n_train=4096, nb_timeout=300),
    'dry': dict(net=dict(nfs=(8, 16, 32), groups=4), bs=8, steps=15, sample_steps=4, speed_bs=8, speed_seconds=0.3,
                speed_warmup=1, n_sample=4, run_n_train=16, nb_timeout=0),
}
NOTEBOOKS = ('02_learner', '05_resnet', '07_accel', '10_ddpm_v2', '13_karras', '16_recipes')


class LossesCB(Callback):
    "Every training loss (as a float) and the parameters before the first step."
    order = 200
    def before_fit(self, learn):
        self.losses = []
        self.start = [p.detach().clone() for p in learn.model.parameters()]
    def after_batch(self, learn):
        if learn.training: self.losses.append(learn.loss.item())


def first_nonfinite(model, inputs, ctx) -> dict | None:
    "Run `model(*inputs)` in `ctx` (an autocast): the first module, in execution order, whose output is not finite."
    found, hooks = [], []
    def hook(mod, args, out, name):
        o = getattr(out, 'sample', out[0] if isinstance(out, (tuple, list)) else out)
        if not found and isinstance(o, torch.Tensor) and o.is_floating_point() and not torch.isfinite(o).all():
            ins = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            found.append(dict(module=name, type=type(mod).__name__, dtype=str(o.dtype).replace('torch.', ''),
                              input_max_abs=[round(a.detach().abs().max().item(), 1) for a in ins]))
    for name, m in model.named_modules(): hooks.append(m.register_forward_hook(partial(hook, name=name or 'model')))
    try:
        with torch.no_grad(), ctx: model(*inputs)
    finally:
        for h in hooks: h.remove()
    return found[0] if found else None


def falling(losses) -> bool:
    "Is the mean loss of the last third of the steps below that of the first third?"
    k = max(1, len(losses)//3)
    return sum(losses[-k:])/k < sum(losses[:k])/k


def make_net(sz): return tiny_unet(**sz['net'], zero_init=True)


def fit_check(mode, dev, sz, x, trained: dict) -> dict:
    "Train a few steps in `mode` (fp32, fp16, bf16, accelerate): finite falling loss, no endless skipping; keep model."
    set_seed(0)
    cfg = recipe('demo')
    dls = DataLoaders.from_tensors((x,), (x[:sz['bs']],), bs=sz['bs'])
    # accelerate in the type MixedPrecision picks by default here (bf16, or fp16 on a GPU without bf16)
    acc_mp = 'fp16' if default_amp(dev.type) == torch.float16 else 'bf16'
    trainer = {'fp32': lambda: TrainCB(n_inp=2), 'fp16': lambda: MixedPrecision('fp16', n_inp=2),
               'bf16': lambda: MixedPrecision('bf16', n_inp=2),
               'accelerate': lambda: AccelerateCB(n_inp=2, mixed_precision=acc_mp, cpu=dev.type == 'cpu')}[mode]()
    rec = LossesCB()
    cbs = [OBJECTIVE_PARTS['karras'].callback(cfg, 0.66), trainer, rec]
    if mode != 'accelerate': cbs.insert(0, DeviceCB(dev))
    learn = Learner(make_net(sz), dls, F.mse_loss, lr=cfg.lr, cbs=cbs, opt_func=partial(optim.Adam, eps=1e-5))
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        learn.fit(1, valid=False)
    on = next(learn.model.parameters()).device
    moved = any(not torch.equal(a.to(b.device), b) for a, b in zip(rec.start, learn.model.parameters()))
    skipped = getattr(trainer, 'n_skipped', 0)
    dtype = acc_mp if mode == 'accelerate' else getattr(trainer, 'amp', None)
    r = dict(steps=len(rec.losses), first_loss=round(rec.losses[0], 4), last_loss=round(rec.losses[-1], 4),
             finite=all(map(math.isfinite, rec.losses)), falling=falling(rec.losses), skipped_steps=skipped,
             weights_changed=moved, autocast=str(dtype or 'float32').replace('torch.', ''), device=str(on),
             loss_scaler=(trainer.acc.scaler if mode == 'accelerate' else getattr(trainer, 'scaler', None)) is not None,
             warnings=sorted({str(w.message)[:200] for w in ws if issubclass(w.category, RuntimeWarning)}))
    r['ok'] = r['finite'] and r['falling'] and moved and skipped < len(rec.losses)//2
    if mode == 'fp16' and default_amp(dev.type) != torch.float16:   # a user gets bf16 here unless they ask for fp16
        r['required'] = False
    if not r['finite']:   # where it overflowed: the first bad step, the weights, and the first module that gave inf/NaN
        r['first_nonfinite_step'] = next(i for i, v in enumerate(rec.losses) if not math.isfinite(v))
        r['weights_finite'] = all(bool(torch.isfinite(p).all()) for p in learn.model.parameters())
        ctx = torch.autocast(on.type, dtype=amp_dtype(dtype)) if dtype else contextlib.nullcontext()
        r['first_nonfinite_module'] = first_nonfinite(learn.model, learn.batch[:2], ctx)
    trained[mode] = learn.model
    return r


FP16_VARIANTS = {'course_no_attention': dict(PRESETS['course'], attn=False),
                 'course_8_groups': dict(PRESETS['course'], groups=8), 'small': PRESETS['small']}

def fp16_variants_check(dev, sz, x) -> dict:
    "The fp16 fit on other U-Nets (informational): which of them overflow, at which step, in which module."
    out = {}
    for name, net in (FP16_VARIANTS if dev.type == 'cuda' else {'toy': sz['net']}).items():   # dry run: toy size
        r = fit_check('fp16', dev, dict(sz, net=net), x, {})
        out[name] = {k: r.get(k) for k in ('ok', 'first_loss', 'last_loss', 'skipped_steps', 'first_nonfinite_step',
                                           'weights_finite', 'first_nonfinite_module')}
    return dict(variants=out, ok=True, required=False)


def sample_check(dev, sz, trained: dict) -> dict:
    "Sample on `dev` and on the CPU from the weights the fp32 fit trained, with the same seed: finite, and close."
    if 'fp32' not in trained: raise RuntimeError('no model to sample from: the fp32 fit failed')
    model = trained['fp32'].to(dev)
    info, n = RunInfo(Path('.'), recipe('demo'), 0.66, 1), min(sz['n_sample'], 64)
    cpu_model = make_net(sz)
    cpu_model.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    r = {}
    for smp in ('dpmpp_2m', 'ddim'):
        kw = dict(progress=False, sampler=smp, steps=sz['sample_steps'], n=n, seed=1)
        on_dev, on_cpu = generate(model.eval(), info, **kw), generate(cpu_model.eval(), info, **kw)
        r[smp] = dict(n=n, finite=bool(torch.isfinite(on_dev).all()), std=round(on_dev.std().item(), 4),
                      mean_abs_diff_vs_cpu=round((on_dev - on_cpu).abs().mean().item(), 5))
    r['ok'] = all(v['finite'] and v['std'] > 0 and v['mean_abs_diff_vs_cpu'] < 0.1 for v in r.values())
    return r


class StopAfterFirstEpochCB(Callback):
    "End the fit after its first epoch (once the checkpoint of that epoch is written): the machine went away."
    order = 100
    def after_epoch(self, learn):
        if learn.epoch == 0: raise CancelFitException()


class FirstWeightsCB(Callback):
    "The weights as the fit begins (after a resume has loaded them) and the first epoch it trains."
    order = CheckpointCB.order + 0.1
    def before_fit(self, learn):
        self.weights = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
        self.first_epoch = None
    def before_epoch(self, learn):
        if self.first_epoch is None: self.first_epoch = learn.epoch


def checkpoint_check(dev, sz, x, folder: Path) -> dict:
    "Save a checkpoint while training on `dev` (fp16 + GradScaler on CUDA) and resume it on the CPU; a run folder too."
    cfg, ck, x = recipe('demo'), folder/'checkpoint.pt', x[:sz['bs']*4]   # epochs of 4 batches
    def learner(device, resume):
        set_seed(0)
        dls = DataLoaders.from_tensors((x,), (x[:sz['bs']],), bs=sz['bs'])
        mp = MixedPrecision('fp16', n_inp=2) if torch.device(device).type == 'cuda' else TrainCB(n_inp=2)
        cbs = [DeviceCB(device), OBJECTIVE_PARTS['karras'].callback(cfg, 0.66), mp, LossesCB(), FirstWeightsCB(),
               CheckpointCB(ck, resume=resume)]
        return Learner(make_net(sz), dls, F.mse_loss, lr=cfg.lr, cbs=cbs, opt_func=partial(optim.Adam, eps=1e-5))
    first = learner(dev, False)
    first.fit(2, valid=False, cbs=[StopAfterFirstEpochCB()])   # the first of two epochs, then the machine is gone
    saved = safe_load(ck)
    on_gpu = {k: v.detach().cpu() for k, v in first.model.state_dict().items()}
    second = learner('cpu', True)
    second.fit(2, valid=False)
    fw, losses = second.cbs[-2], second.cbs[-3].losses
    same = saved['model'].keys() == on_gpu.keys() and all(torch.equal(saved['model'][k], on_gpu[k]) for k in on_gpu)
    loaded = all(torch.equal(fw.weights[k], on_gpu[k]) for k in on_gpu)
    save_weights(first.model.state_dict(), folder/'weights.safetensors')
    back = load_weights(folder/'weights.safetensors')
    # the user's path: `miniai train` on this device, `miniai sample` on the CPU
    run_cfg = recipe('demo', n_train=sz['run_n_train'], bs=sz['bs'], preset='micro')
    train(run_cfg, folder/'run', progress=False)
    model, info = load_run(folder/'run', device='cpu')
    x_cpu = generate(model, info, progress=False, steps=sz['sample_steps'], n=4)
    r = dict(saved_on=str(dev), resumed_on='cpu', checkpoint_equals_model=same, resumed_weights_equal=loaded,
             resumed_at_epoch=fw.first_epoch, resumed_losses_finite=bool(losses) and all(map(math.isfinite, losses)),
             scaler_saved='MixedPrecision' in saved['cbs'] and saved['cbs']['MixedPrecision']['scaler'] is not None,
             safetensors_round_trip=all(torch.equal(back[k], on_gpu[k]) for k in on_gpu),
             run_trained_on=info.device, run_sampled_on_cpu=bool(torch.isfinite(x_cpu).all()))
    r['ok'] = (same and loaded and r['resumed_at_epoch'] == 1 and r['resumed_losses_finite'] and
               r['safetensors_round_trip'] and r['run_sampled_on_cpu'] and (r['scaler_saved'] or dev.type != 'cuda'))
    return r


def speed(dev, sz) -> dict:
    "Training images/s of the micro and tiny presets in fp32 and mixed precision; sampling images/s of micro."
    rows = [run_one(pr, m, sz['speed_bs'], sz['speed_warmup'], sz['speed_seconds'], 1, dev)
            for pr in ('micro', 'tiny') for m in ('fp32', 'mp')]
    ips = {(r['preset'], r['mode']): r['images_per_s'] for r in rows}
    ratios = {pr: round(ips[pr, 'mp']/ips[pr, 'fp32'], 3) for pr in ('micro', 'tiny')}
    cfg = recipe('demo')
    model, info = tiny_unet(**PRESETS['micro'], zero_init=True).to(dev).eval(), RunInfo(Path('.'), cfg, 0.66, 1)
    generate(model, info, progress=False, steps=2, n=2)                       # warm-up
    sync(dev); t0 = time.perf_counter()
    n = sz['n_sample']
    generate(model, info, progress=False, sampler='dpmpp_2m', steps=sz['sample_steps'], n=n, bs=min(n, 1024))
    sync(dev); secs = time.perf_counter() - t0
    return dict(train=rows, mp_over_fp32=ratios,
                sampling=dict(preset='micro', sampler='dpmpp_2m', steps=sz['sample_steps'], n=n, seconds=round(secs, 2),
                              images_per_s=round(n/secs, 1)),
                ok=all(r['images_per_s'] > 0 for r in rows))


def failure(log: str, root: Path) -> str:
    "Why `nbdev_test` failed: its output from the failing cell's traceback on (else its end), paths relative to `root`."
    log = log.replace(f'{root}{os.sep}', '')
    i = max(log.rfind('While Executing Cell'), log.rfind('Traceback (most recent call last)'))
    return log[max(i - 300, 0):][:2500] if i >= 0 else log[-2500:]


def notebooks_check(sz) -> dict:
    "Run the CI-scale notebooks that train, on this machine's device (`nbdev_test`, one at a time)."
    root, out = Path(__file__).parents[1], {}
    # next to this Python first (a venv), else on PATH (a machine whose Python is not a venv)
    where = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get('PATH', '')])
    nbdev_test = shutil.which('nbdev_test', path=where)
    if nbdev_test is None: raise RuntimeError('nbdev_test is not next to this Python nor on PATH: install nbdev 2 '
                                              '(make setup)')
    for nb in NOTEBOOKS:
        t0 = time.time()
        cmd = [nbdev_test, '--path', f'nbs/{nb}.ipynb']
        try:
            p = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=sz['nb_timeout'],
                               env={**os.environ, 'MINIAI_SCALE': 'ci'})
            out[nb] = dict(ok=p.returncode == 0, seconds=round(time.time() - t0, 1),
                           **({} if p.returncode == 0 else {'error': failure(p.stdout + p.stderr, root)}))
        except subprocess.TimeoutExpired: out[nb] = dict(ok=False, seconds=sz['nb_timeout'], error='timed out')
        print(f"  {nb:13s} {'ok  ' if out[nb]['ok'] else 'FAIL'} ({out[nb]['seconds']:.0f} s)", flush=True)
    return dict(notebooks=out, ok=all(v['ok'] for v in out.values()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dry-run', action='store_true', help='run on the CPU at toy size (automatic without CUDA)')
    p.add_argument('--notebooks', action='store_true', help='also run the CI-scale training notebooks (GPU only)')
    p.add_argument('--fp16-variants', action='store_true',
                   help='also fit fp16 on the course U-Net without attention, with 8 groups, and the small preset')
    p.add_argument('--out', default=None,
                   help='JSON to write (default: bench/results/gpu_check.json, gpu_check_dry_run.json for a dry run)')
    a = p.parse_args()
    gpu = torch.cuda.is_available() and not a.dry_run
    dev, sz = torch.device('cuda' if gpu else 'cpu'), SIZES['gpu' if gpu else 'dry']
    note = (f"GPU check on {torch.cuda.get_device_name(dev)}" if gpu else
            "DRY RUN: " + ("--dry-run given" if torch.cuda.is_available() else "no CUDA GPU is present") +
            "; the same checks ran on the CPU at toy size, so every figure below is a CPU figure, not a GPU one")
    print(note, flush=True)
    x, _ = diffusion_data(sz['bs']*sz['steps'], n_valid=16)
    res = dict(gpu_present=torch.cuda.is_available(), dry_run=not gpu, note=note, sizes=sz, checks={})
    out = Path(a.out or RESULTS/('gpu_check.json' if gpu else 'gpu_check_dry_run.json'))
    trained = {}
    checks = {f'fit_{m}': partial(fit_check, m, dev, sz, x, trained) for m in ('fp32', 'fp16', 'bf16', 'accelerate')}
    checks.update({
        'sampling': partial(sample_check, dev, sz, trained), 'speed': partial(speed, dev, sz)})
    tmp = tempfile.TemporaryDirectory(prefix='miniai_gpu_check_')
    checks['checkpoint'] = partial(checkpoint_check, dev, sz, x, Path(tmp.name))
    if a.fp16_variants: checks['fp16_variants'] = partial(fp16_variants_check, dev, sz, x)
    if a.notebooks and gpu: checks['notebooks'] = partial(notebooks_check, sz)
    elif a.notebooks: res['notebooks'] = 'not run: a dry run checks the script, the notebooks run in CI anyway'
    with tmp:
        for name, check in checks.items():
            t0 = time.time()
            try: r = check()
            except Exception as e:
                r = dict(ok=False, error=f'{type(e).__name__}: {e}'[:1000], traceback=traceback.format_exc()[-3000:])
            r['seconds'] = round(time.time() - t0, 1)
            res['checks'][name] = r
            verdict = 'ok  ' if r['ok'] else 'FAIL' if r.get('required', True) else 'FAIL (reported, not required)'
            print(f"{name:15s} {verdict} ({r['seconds']:.0f} s) " +
                  (r.get('error', '') or ', '.join(f'{k}={v}' for k, v in r.items()
                                                  if k in ('first_loss', 'last_loss', 'skipped_steps', 'autocast',
                                                           'mp_over_fp32', 'first_nonfinite_step',
                                                           'first_nonfinite_module'))), flush=True)
            for vn, v in r.get('variants', {}).items():
                where = (v['first_nonfinite_module'] or {}).get('module')
                print(f"  {vn:20s} {'ok  ' if v['ok'] else 'FAIL'} skipped {v['skipped_steps']}, first non-finite "
                      f"loss at step {v['first_nonfinite_step']}, in {where}")
            write_json(out, dict(res, machine=machine(dev)))
    # fp16 where it is not the default (bf16 is) is reported but does not fail the check: see 07_accel
    res['ok'] = all(r['ok'] or not r.get('required', True) for r in res['checks'].values())
    write_json(out, dict(res, machine=machine(dev)))
    print(f"{'all checks passed' if res['ok'] else 'SOME CHECKS FAILED'}; {note}.\nwrote {out}")
    sys.exit(0 if res['ok'] else 1)

if __name__ == '__main__': main()
