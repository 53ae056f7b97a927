"""Full-scale training runs of 09_ddpm and 10_ddpm_v2: the noise-prediction MSE after 5 epochs that the course reports.

Recipes (the notebooks' full scale; data: all 60,000 training images padded to 32x32 in [-1, 1], validated on the
10,000 test images, each noisified at a random t of the linear schedule 1e-4..0.02, T = 1000); both networks are
miniai's `UNet` (diffusers' `UNet2DModel` called as `net(x_t, t)`), trained on batches `(x_t, t, ε)`:
- `06`: widths (32, 64, 128, 128) and diffusers' defaults (attention in the lower levels, 32 groups, default init),
  noisified on the device (`ddpm_batch`, as 09_ddpm's `DDPMCB` does); Adam lr 4e-3 (PyTorch's eps), OneCycle,
  bs 128, 5 epochs (course, lesson 15: MSE 0.016).
- `07`: widths (16, 32, 64, 128) and 8 groups, `init_ddpm`, noisified by `ddpm_collate`; Adam lr 5e-3 with eps 1e-5,
  OneCycle, bs 128, 5 epochs (course, lesson 17: 0.018).

Checkpoints after every epoch and every 10 minutes under --run-dir (locked while the script runs); a later call
continues from there (hours on a CPU can be spread over several sittings). At the end: 16 samples by 1000-step
ancestral DDPM (a PNG), the FID of 2,048 DDIM samples (100 steps, --eta 0 by default, scored with the feature network
shipped with miniai against the test images, beside 2,048 real training images) and the results as JSON.
A later call keeps what is already done (training, samples, each FID setting); another --eta or --ddim-steps adds a FID.
--mse-draws K re-scores the final model K times on the validation images with fresh t and noise (the spread of one
epoch's figure).

  .venv/bin/python bench/ddpm_full.py --recipe 07
  .venv/bin/python bench/ddpm_full.py --recipe 07 --n-train 256 --n-valid 256 --epochs 1 --n-samples 4 --fid-n 64 \\
      --ddim-steps 10 --run-dir /tmp/dd --out /tmp/dd.json        # a smoke run
"""
import argparse, json, sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torch.optim.lr_scheduler import OneCycleLR
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from fastprogress import progress_bar

from miniai.core import set_seed, def_device
from miniai.datasets import fashion_mnist_tensors, DataLoaders
from miniai.learner import Learner, DeviceCB, TrainCB, MetricsCB, BatchSchedCB, BatchTransformCB, ProgressCB
from miniai.checkpoint import CheckpointCB, safe_load
from miniai.ddpm_v2 import UNet, init_ddpm, linear_sched, noisify, ddpm_collate, ddpm_sample, ddim_sample
from miniai.recipes import ddpm_batch
from _common import FEATURES, RESULTS, WallTimeCB, image_eval, run_folder, write_json

RECIPES = {
    '06': dict(widths=(32, 64, 128, 128), groups=32, lr=4e-3, adam_eps=1e-8, bs=128, epochs=5, init='diffusers default',
               course_mse=0.016),
    '07': dict(widths=(16, 32, 64, 128), groups=8, lr=5e-3, adam_eps=1e-5, bs=128, epochs=5, init='init_ddpm',
               course_mse=0.018),
}


def train(a, r, data, sched, ck: Path):
    "Train (or continue, or reload the finished) run in the checkpoint `ck`; returns (model, metrics, seconds)."
    set_seed(1)
    net = UNet(in_channels=1, out_channels=1, block_out_channels=r['widths'], norm_num_groups=r['groups'])
    if a.recipe == '06':
        model = net
        dls = DataLoaders.from_tensors(data['train'], data['test'], bs=r['bs'])
        objective = [BatchTransformCB(partial(ddpm_batch, alphabar=sched.alphabar))]   # on the device, as DDPMCB
    else:
        model = init_ddpm(net)
        dls = DataLoaders.from_tensors(data['train'], data['test'], bs=r['bs'], collate_fn=ddpm_collate(sched.alphabar))
        objective = []
    settings = dict(recipe=a.recipe, epochs=r['epochs'], scaling=a.scaling, n_train=len(data['train'][0]),
                    n_valid=len(data['test'][0]))
    if ck.exists():
        old = safe_load(ck).get('settings')   # checkpoints written before settings were recorded: trusted as they are
        if old is not None and old != settings:
            sys.exit(f"{ck} belongs to a run with {old}, not {settings}: give another --run-dir, or delete {ck} to "
                     "start again.")
    print(f"recipe {a.recipe}: " + (f'continuing from {ck}' if ck.exists() else f'new run, checkpoints in {ck}'),
          flush=True)
    metrics, timer = MetricsCB(), WallTimeCB()
    oc = partial(OneCycleLR, max_lr=r['lr'], total_steps=r['epochs']*len(dls.train))
    cbs = [DeviceCB(), *objective, TrainCB(n_inp=2), metrics, timer, BatchSchedCB(oc),
           CheckpointCB(ck, resume=ck.exists(), every_minutes=10, extra=dict(settings=settings))]
    learn = Learner(model, dls, F.mse_loss, lr=r['lr'], opt_func=partial(optim.Adam, eps=r['adam_eps']),
                    cbs=cbs + ([ProgressCB()] if a.progress else []))
    learn.fit(r['epochs'])
    return model.eval(), metrics, timer.seconds


def samples_png(a, r, model, sched, lo, valid_mse, png: Path) -> bool:
    "Draw `a.n_samples` images by 1000-step ancestral DDPM into the PNG `png`; are they all finite?"
    g = torch.Generator().manual_seed(0)
    x = ddpm_sample(model, (a.n_samples, 1, 32, 32), sched.alphabar, clip=(lo, 1.), generator=g,
                    progress=a.progress).cpu()
    n = a.n_samples; cols = min(n, 8); rows = -(-n//cols)
    fig, axs = plt.subplots(rows, cols, figsize=(cols*1.2, rows*1.2 + 0.4), squeeze=False)
    for ax in axs.flat: ax.axis('off')
    for ax, im in zip(axs.flat, x): ax.imshow(im[0], cmap='gray', vmin=lo, vmax=1)
    fig.suptitle(f"{a.recipe}: {r['epochs']} epochs, valid MSE {valid_mse:.4f}; 1000-step DDPM", fontsize=9)
    fig.tight_layout(); fig.savefig(png, dpi=90)
    return bool(torch.isfinite(x).all())


@torch.no_grad()
def mse_draws(model, x0s, sched, k_draws: int) -> dict:
    "The validation MSE of `model` over `k_draws` fresh draws of t and ε (each with its own seeded generator)."
    means, within = [], []
    for k in range(k_draws):
        g, per = torch.Generator().manual_seed(100 + k), []
        for i in range(0, len(x0s), 500):
            (xt, t), eps = noisify(x0s[i:i+500], sched.alphabar, generator=g)
            per.append(((model(xt.to(def_device), t.to(def_device)).cpu() - eps)**2).flatten(1).mean(1))
        per = torch.cat(per); means.append(per.mean().item()); within.append((per.std()/len(per)**0.5).item())
    m = torch.tensor(means)
    return dict(means=[round(v, 5) for v in means], mean=round(m.mean().item(), 5),
                std=round(m.std().item(), 5) if len(m) > 1 else None, se_within=round(max(within), 5))


def fid(a, model, sched, lo, key: dict) -> dict:
    "10_ddpm_v2's full-scale FID: DDIM samples of the trained model, and as many real training images."
    ie = image_eval(a.feature)
    chunks = range(0, a.fid_n, 256)
    many = torch.cat([ddim_sample(model, (min(256, a.fid_n - i), 1, 32, 32), sched.alphabar, steps=a.ddim_steps,
                                  eta=a.eta, clip=(lo, 1.), generator=torch.Generator().manual_seed(i),
                                  progress=False).cpu() for i in (progress_bar(chunks) if a.progress else chunks)])
    if lo == 0: many = many*2 - 1   # the feature net takes [-1, 1]
    real = fashion_mnist_tensors(scaling='-11', pad=True, n_train=a.fid_n, n_test=16)['train'][0]
    fs, fr = ie.evaluate(many), ie.evaluate(real)
    print(f"FID (N = {a.fid_n}, DDIM {a.ddim_steps} steps, eta {a.eta:g}, feature net {fs['feature_net']}): "
          f"{fs['fid']:.2f}; {a.fid_n} real training images: {fr['fid']:.2f}", flush=True)
    return dict(setting=key, feature_net=fs['feature_net'], fid=round(fs['fid'], 2), kid=round(fs['kid'], 4),
                real_fid=round(fr['fid'], 2), real_kid=round(fr['kid'], 4))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipe', choices=list(RECIPES), required=True)
    p.add_argument('--epochs', type=int, default=None, help="default: the recipe's 5")
    p.add_argument('--n-train', type=int, default=None, help='training images (default: all 60,000)')
    p.add_argument('--n-valid', type=int, default=None, help='validation images (default: all 10,000 test images)')
    p.add_argument('--n-samples', type=int, default=16)
    p.add_argument('--fid-n', type=int, default=2048, help='samples for the FID (DDIM); 0: no FID')
    p.add_argument('--ddim-steps', type=int, default=100)
    p.add_argument('--mse-draws', type=int, default=0,
                   help='re-score the final model K times on the validation images, each with fresh t and noise: how '
                        'much the validation MSE moves from draw to draw')
    p.add_argument('--eta', type=float, default=0.,
                   help='DDIM eta for the FID samples (0: deterministic, 1: DDPM-like)')
    p.add_argument('--scaling', choices=('-11', '01'), default='-11',
                   help="pixel range: [-1, 1] as in Ho et al. and these notebooks, or [0, 1] as in the course's "
                        "lessons 15/17 (the MSEs differ)")
    p.add_argument('--feature', choices=FEATURES, default='shipped', help='FID feature network (default: %(default)s)')
    p.add_argument('--run-dir', default=None, help='default: runs/ddpm_full_<recipe>')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=None, help='default: bench/results/ddpm_full_<recipe>.json')
    a = p.parse_args()
    run_dir = Path(a.run_dir or f'runs/ddpm_full_{a.recipe}')
    with run_folder(run_dir): run(a, run_dir, Path(a.out or RESULTS/f'ddpm_full_{a.recipe}.json'))


def run(a, run_dir: Path, out: Path):
    "Every stage of the recipe in the (locked) `run_dir`; what an earlier call finished is kept, not redone."
    r = dict(RECIPES[a.recipe]); r['epochs'] = a.epochs or r['epochs']; r['scaling'] = a.scaling
    lo = -1. if a.scaling == '-11' else 0.
    set_seed(42)
    data = fashion_mnist_tensors(scaling=a.scaling, pad=True, n_train=a.n_train, n_test=a.n_valid)
    sched = linear_sched()
    prev = json.loads(out.read_text()) if out.exists() else {}   # what an earlier call finished, read before writing
    model, metrics, seconds = train(a, r, data, sched, run_dir/'checkpoint.pt')
    valid = [h['loss'] for h in metrics.history if h['train'] == 'eval']
    res = dict(recipe=a.recipe, **{**r, 'widths': list(r['widths'])}, n_train=len(data['train'][0]),
               n_valid=len(data['test'][0]), valid_mse=valid[-1], valid_mse_per_epoch=valid, history=metrics.history,
               train_minutes=round(seconds/60, 1), params_m=round(sum(q.numel() for q in model.parameters())/1e6, 2))
    print(f"recipe {a.recipe}: validation MSE {valid[-1]:.4f} after {r['epochs']} epochs ({seconds/60:.0f} min); "
          f"course {r['course_mse']}", flush=True)
    write_json(out, res)

    keys = ('recipe', 'epochs', 'n_train', 'n_valid', 'valid_mse', 'scaling')
    same = {k: prev.get(k, '-11' if k == 'scaling' else None) for k in keys} == {k: res[k] for k in keys}
    png = out.with_suffix('.png')
    if same and prev.get('n_samples') == a.n_samples and 'samples_finite' in prev and png.exists():
        print(f'samples: kept {png} (same run, same settings)', flush=True)
        res.update(n_samples=a.n_samples, samples_finite=prev['samples_finite'])
    else: res.update(n_samples=a.n_samples, samples_finite=samples_png(a, r, model, sched, lo, valid[-1], png))
    write_json(out, res)

    if a.mse_draws:   # validation draws fresh t and ε each epoch: this measures how far that alone moves the MSE
        kept = prev.get('valid_mse_draws') if same else None
        if kept and len(kept['means']) == a.mse_draws:
            print(f"MSE draws: kept {kept}", flush=True); res['valid_mse_draws'] = kept
        else:
            res['valid_mse_draws'] = mse_draws(model, data['test'][0], sched, a.mse_draws)
            print(f"validation MSE over {a.mse_draws} draws of t and ε: {res['valid_mse_draws']}", flush=True)
        write_json(out, res)
    elif same and 'valid_mse_draws' in prev: res['valid_mse_draws'] = prev['valid_mse_draws']

    old = prev.get('fid') if same else None   # one entry per FID setting; a file from before held a single dict
    res['fid'] = [old] if isinstance(old, dict) else list(old or [])
    if a.fid_n:
        key = dict(n=a.fid_n, ddim_steps=a.ddim_steps, eta=a.eta, feature=a.feature)
        done = next((f for f in res['fid'] if f['setting'] == key), None)
        if done is not None: print(f"FID: kept {done}", flush=True)
        else: res['fid'].append(fid(a, model, sched, lo, key))
    write_json(out, res)
    print(f'wrote {out} and {png}')

if __name__ == '__main__': main()
