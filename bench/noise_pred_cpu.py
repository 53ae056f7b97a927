"""12_noise_pred's comparison at a CPU-sized scale: the t-conditioned U-Net, the no-T U-Net with the schedule's ᾱ, and
the no-T U-Net with each image's ᾱ predicted by the noise-level regressor, all sampled by DDIM from the same noise, by
FID.

The notebook's CI scale (3,000 images, one epoch of an 8/16/32 U-Net, 128 samples) only shows that the pipeline runs:
its FIDs are in the hundreds and change order with the seed. Its full scale (the course's (32, 64, 128, 256) U-Nets with
attention, 25 epochs, 2,048 samples) needs a GPU. This script sits in between, sized for the 2-core CPU:

- data: all 60,000 training images, 32x32 in [-1, 1]; validation on the first 2,048 test images;
- both U-Nets: `tiny_unet` with the `micro` preset of `miniai train` (widths 16/32/64, no attention, DDPM init),
  trained through `ContNoiseCB` (t ~ U[0, 1), cosine ᾱ(t)), Adam lr 5e-3 eps 1e-5, OneCycle, bs 64, `--epochs` each,
  the same seed; the no-T one is wrapped in `NoT`;
- the regressor: `noise_level_net()` (widths 8..128), AdamW OneCycle to lr 1e-2, bs 128, `--reg-epochs`;
- sampling: `--n` images from the same starting noise, `--steps` DDIM steps, η = 1 for all three methods, plus the
  η sweep (0.5, 0) for the predicted-ᾱ sampler and η = 0 for the t-model;
- FID/KID at N = `--n` against the 10,000 test images with the feature network shipped with miniai (or `--feature`;
  its hash is in the JSON).

Every stage is saved under --run-dir (models, regressor, samples as tensors), so an interrupted run continues where it
stopped and the samples can be scored again with another feature net; the run folder is locked while the script runs.

  .venv/bin/python bench/noise_pred_cpu.py             # the figures in 12_noise_pred's prose (64 min, idle 2-core CPU)
  .venv/bin/python bench/noise_pred_cpu.py --n-train 512 --epochs 1 --reg-epochs 1 --n 32 --steps 5 \\
      --run-dir /tmp/np --out /tmp/np.json             # a smoke run
Writes bench/results/noise_pred_cpu.json and a PNG (samples of each method, FID bars).
"""
import argparse, time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torch.optim.lr_scheduler import OneCycleLR
from scipy.stats import spearmanr
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt

from miniai.core import set_seed, def_device
from miniai.datasets import fashion_mnist_tensors, DataLoaders
from miniai.learner import Learner, DeviceCB, TrainCB, MetricsCB, BatchSchedCB, ProgressCB
from miniai.ddpm_v2 import tiny_unet
from miniai.denoisers import NoT
from miniai.settings import PRESETS
from miniai.noise_pred import (ContNoiseCB, NoiseLevelCB, noise_level_net, noisify_cont, alphabar_clamped,
                               inv_alphabar_cos, ddim_cont, ddim_no_t)
from _common import FEATURES, RESULTS, image_eval, run_folder, stage, write_json

# name -> (model, sampler, eta); 'pred' samplers use the regressor
METHODS = {
    't-model, η=1': ('t', 'sched', 1.),
    'no-T, scheduled ᾱ, η=1': ('not', 'sched', 1.),
    'no-T, predicted ᾱ, η=1': ('not', 'pred', 1.),
    'no-T, predicted ᾱ, η=0.5': ('not', 'pred', .5),
    'no-T, predicted ᾱ, η=0': ('not', 'pred', 0.),
    't-model, η=0': ('t', 'sched', 0.),
}


def fit(model, dls, cbs, epochs, lr, opt_func, progress):
    "Train with OneCycle to `lr`; returns (the last validation loss, seconds)."
    metrics = MetricsCB()
    oc = partial(OneCycleLR, max_lr=lr, total_steps=epochs*len(dls.train))
    t0 = time.time()
    Learner(model, dls, F.mse_loss, lr=lr, opt_func=opt_func,
            cbs=[DeviceCB(), *cbs, metrics, BatchSchedCB(oc)] + ([ProgressCB()] if progress else [])).fit(epochs)
    return [h['loss'] for h in metrics.history if h['train'] == 'eval'][-1], time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=2, help='epochs for each U-Net')
    p.add_argument('--reg-epochs', type=int, default=1)
    p.add_argument('--n-train', type=int, default=None, help='training images (default: all 60,000)')
    p.add_argument('--n', type=int, default=1024, help='samples per method (the FID N)')
    p.add_argument('--steps', type=int, default=100)
    p.add_argument('--feature', choices=FEATURES, default='shipped', help='FID feature network (default: %(default)s)')
    p.add_argument('--run-dir', default='runs/noise_pred_cpu')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=None, help='default: bench/results/noise_pred_cpu.json')
    a = p.parse_args()
    with run_folder(a.run_dir): run_stages(a, Path(a.run_dir))


def run_stages(a, run: Path):
    "Every stage in the (locked) run folder `run`: reloaded if saved, else done and saved."
    out = Path(a.out or RESULTS/'noise_pred_cpu.json')

    data = fashion_mnist_tensors(scaling='-11', pad=True, n_train=a.n_train, n_test=2048)
    res = dict(epochs=a.epochs, reg_epochs=a.reg_epochs, n_train=len(data['train'][0]), n=a.n, steps=a.steps,
               unet=dict(PRESETS['micro']), feature=a.feature, models={}, methods={})
    models = {}
    for key in ('t', 'not'):
        def train(key=key):
            set_seed(42)
            m = tiny_unet(**PRESETS['micro'], zero_init=True)
            m = NoT(m) if key == 'not' else m
            dls = DataLoaders.from_tensors(data['train'], data['test'], bs=64)
            loss, secs = fit(m, dls, [ContNoiseCB(), TrainCB(n_inp=2)], a.epochs, 5e-3, partial(optim.Adam, eps=1e-5),
                             a.progress)
            return dict(state=m.state_dict(), valid_mse=loss, train_minutes=secs/60)
        d = stage(run/f'unet_{key}.pt', train, dict(model=key, epochs=a.epochs, n_train=res['n_train']))
        m = tiny_unet(**PRESETS['micro'], zero_init=True)
        m = NoT(m) if key == 'not' else m
        m.load_state_dict(d['state']); models[key] = m.to(def_device).eval()
        res['models'][key] = dict(valid_mse=round(float(d['valid_mse']), 5),
                                  train_minutes=round(float(d['train_minutes']), 1))
        print(f"U-Net {key}: validation MSE {d['valid_mse']:.4f}, {d['train_minutes']:.1f} min", flush=True)
        write_json(out, res)

    def train_reg():
        set_seed(42)
        r = noise_level_net()
        dls = DataLoaders.from_tensors(data['train'], data['test'], bs=128)
        loss, secs = fit(r, dls, [NoiseLevelCB(), TrainCB()], a.reg_epochs, 1e-2, optim.AdamW, a.progress)
        return dict(state=r.state_dict(), valid_mse=loss, train_minutes=secs/60)
    d = stage(run/'regressor.pt', train_reg, dict(epochs=a.reg_epochs, n_train=res['n_train']))
    reg = noise_level_net(); reg.load_state_dict(d['state']); reg = reg.to(def_device).eval()
    set_seed(7)
    (xt, tv), _ = noisify_cont(data['test'][0])
    with torch.no_grad(): lg = torch.cat([reg(xt[i:i+256].to(def_device)).cpu() for i in range(0, len(xt), 256)])
    err_t = (inv_alphabar_cos(lg.sigmoid()) - tv).abs()
    res['regressor'] = dict(valid_mse_logit=round(float(d['valid_mse']), 4),
                            train_minutes=round(float(d['train_minutes']), 1),
                            spearman=round(float(spearmanr(alphabar_clamped(tv).logit(), lg)[0]), 4),
                            median_abs_err_t=round(err_t.median().item(), 4),
                            p90_abs_err_t=round(err_t.quantile(0.9).item(), 4))
    print(f"regressor: {res['regressor']}", flush=True)
    write_json(out, res)

    ie = image_eval(a.feature)
    set_seed(5)
    x0 = torch.randn(a.n, 1, 32, 32)
    samples = {}
    for i, (name, (key, how, eta)) in enumerate(METHODS.items()):
        def draw(key=key, how=how, eta=eta):
            set_seed(100)
            t0, xs = time.time(), []
            for b in range(0, a.n, 256):
                x = x0[b:b+256].to(def_device)
                f = (partial(ddim_no_t, models[key], reg) if how == 'pred' else partial(ddim_cont, models[key]))
                xs.append(f(x, a.steps, eta=eta, progress=a.progress).cpu())
            return dict(x=torch.cat(xs), seconds=time.time() - t0)
        d = stage(run/f'samples_{i}_{a.n}_{a.steps}.pt', draw, dict(method=name, n=a.n, steps=a.steps, epochs=a.epochs,
                                                                    reg_epochs=a.reg_epochs, n_train=res['n_train']))
        samples[name] = d['x']
        res['methods'][name] = dict(model=key, abar=how, eta=eta, sample_seconds=round(float(d['seconds']), 1),
                                    **ie.evaluate(d['x'].clamp(-1, 1)))
        print(f"{name:26s} FID {res['methods'][name]['fid']:8.2f}  KID {res['methods'][name]['kid']:.4f}", flush=True)
        write_json(out, res)
    res['real training images'] = ie.evaluate(data['train'][0][:a.n])
    write_json(out, res)
    real = res['real training images']
    print(f"real training images       FID {real['fid']:8.2f} (N={a.n}, feature net {real['feature_net']})")

    fig = plt.figure(figsize=(13, 6.4))
    gs = fig.add_gridspec(2, 3, height_ratios=[1, 0.9])
    for j, name in enumerate(list(METHODS)[:3]):
        ax = fig.add_subplot(gs[0, j])
        g = samples[name][:32].clamp(-1, 1)
        k = len(g); nc = min(8, k); nr = -(-k//nc)
        g = torch.cat([g, g.new_full((nr*nc - k, *g.shape[1:]), -1.)])
        grid = ((g + 1)/2).view(nr, nc, 32, 32).permute(0, 2, 1, 3).reshape(nr*32, nc*32)
        ax.imshow(grid, cmap='gray', vmin=0, vmax=1); ax.axis('off')
        ax.set_title(f"{name}: FID {res['methods'][name]['fid']:.1f}", fontsize=10)
    ax = fig.add_subplot(gs[1, :])
    names = list(res['methods'])
    ax.barh(names, [res['methods'][k]['fid'] for k in names]); ax.invert_yaxis()
    for i, k in enumerate(names):
        ax.text(res['methods'][k]['fid'], i, f" {res['methods'][k]['fid']:.1f}", va='center', fontsize=8)
    ax.axvline(real['fid'], c='k', ls=':', label=f"real training images ({real['fid']:.1f})")
    ax.set_xlabel(f"FID (N={a.n}, {a.steps} DDIM steps, feature net {real['feature_net']}; lower is better)",
                  fontsize=9)
    ax.tick_params(labelsize=9); ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout(); fig.savefig(out.with_suffix('.png'), dpi=90)
    print(f'wrote {out} and {out.with_suffix(".png")}')


if __name__ == '__main__': main()
