"""Full-scale training runs of 09_ddpm and 10_ddpm_v2: the noise-prediction MSE after 5 epochs that the course reports.

Recipes (the notebooks' full scale; data: all 60,000 training images padded to 32x32 in [-1, 1], validated on the 10,000
test images, each noisified at a random t of the linear schedule 1e-4..0.02, T = 1000):
- `06`: diffusers `UNet2DModel` with widths (32, 64, 128, 128) and its defaults (attention in the lower levels, 32 groups),
  trained through `DDPMCB`; Adam lr 4e-3 (PyTorch's eps), OneCycle, bs 128, 5 epochs (course, lesson 15: MSE 0.016).
- `07`: miniai's `UNet` with widths (16, 32, 64, 128) and 8 groups, `init_ddpm`, noisified by `ddpm_collate`; Adam lr 5e-3
  with eps 1e-5, OneCycle, bs 128, 5 epochs (course, lesson 17: 0.018).

Checkpoints after every epoch and every 10 minutes under --run-dir; a later call continues from there (hours on a CPU can be spread over
several sittings). At the end: 16 samples by 1000-step ancestral DDPM (a PNG), the FID of 2,048 DDIM samples (100 steps, --eta 0 by default,
scored with the full feature net of 08_fid against the test images, beside 2,048 real training images) and the results as JSON.
A later call keeps what is already done (training, samples, each FID setting); another --eta or --ddim-steps adds a FID.
--mse-draws K re-scores the final model K times on the validation images with fresh t and noise (the spread of one epoch's figure).

  .venv/bin/python bench/ddpm_full.py --recipe 07
  .venv/bin/python bench/ddpm_full.py --recipe 07 --n-train 256 --n-valid 256 --epochs 1 --n-samples 4 --fid-n 64 --ddim-steps 10 --feature ci --run-dir /tmp/dd --out /tmp/dd.json   # a smoke run
"""
import argparse, json, platform, sys
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import optim
from torch.optim.lr_scheduler import OneCycleLR
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from diffusers import UNet2DModel

from miniai.core import set_seed, def_device
from miniai.datasets import fashion_mnist_tensors, DataLoaders
from miniai.learner import Learner, DeviceCB, TrainCB, MetricsCB, BatchSchedCB, ProgressCB, safe_load
from miniai.checkpoint import CheckpointCB
from miniai.ddpm import DDPMCB
from fastprogress import progress_bar
from miniai.ddpm_v2 import UNet, init_ddpm, linear_sched, noisify, ddpm_collate, ddpm_sample, ddim_sample
from _common import WallTimeCB, write_json

RECIPES = {
    '06': dict(widths=(32, 64, 128, 128), groups=32, lr=4e-3, adam_eps=1e-8, bs=128, epochs=5, init='diffusers default', course_mse=0.016),
    '07': dict(widths=(16, 32, 64, 128), groups=8, lr=5e-3, adam_eps=1e-5, bs=128, epochs=5, init='init_ddpm', course_mse=0.018),
}


class EpsOf(torch.nn.Module):
    "`model((x_t, t))` -> ε̂ for a plain diffusers UNet2DModel, as `ddpm_sample` expects."
    def __init__(self, m): super().__init__(); self.m = m
    def forward(self, xt_t): return self.m(*xt_t).sample


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--recipe', choices=list(RECIPES), required=True)
    p.add_argument('--epochs', type=int, default=None, help="default: the recipe's 5")
    p.add_argument('--n-train', type=int, default=None, help='training images (default: all 60,000)')
    p.add_argument('--n-valid', type=int, default=None, help='validation images (default: all 10,000 test images)')
    p.add_argument('--n-samples', type=int, default=16)
    p.add_argument('--fid-n', type=int, default=2048, help='samples for the FID (DDIM, full feature net); 0: no FID')
    p.add_argument('--ddim-steps', type=int, default=100)
    p.add_argument('--mse-draws', type=int, default=0,
                   help='re-score the final model K times on the validation images, each with fresh t and noise: how much the validation MSE moves from draw to draw')
    p.add_argument('--eta', type=float, default=0., help='DDIM eta for the FID samples (0: deterministic, 1: DDPM-like)')
    p.add_argument('--scaling', choices=('-11', '01'), default='-11',
                   help="pixel range: [-1, 1] as in Ho et al. and these notebooks, or [0, 1] as in the course's lessons 15/17 (the MSEs differ)")
    p.add_argument('--feature', choices=('ci', 'full'), default='full', help="08_fid's feature net (full: ~1 h 45 min to build if not cached)")
    p.add_argument('--run-dir', default=None, help='default: runs/ddpm_full_<recipe>')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=None, help='default: bench/results/ddpm_full_<recipe>.json')
    a = p.parse_args()
    r = dict(RECIPES[a.recipe]); r['epochs'] = a.epochs or r['epochs']; r['scaling'] = a.scaling
    lo = -1. if a.scaling == '-11' else 0.
    run_dir = Path(a.run_dir or f'runs/ddpm_full_{a.recipe}'); run_dir.mkdir(parents=True, exist_ok=True)
    out = Path(a.out or Path(__file__).parent/'results'/f'ddpm_full_{a.recipe}.json')

    set_seed(42)
    data = fashion_mnist_tensors(scaling=a.scaling, pad=True, n_train=a.n_train, n_test=a.n_valid)
    sched = linear_sched()
    set_seed(1)
    if a.recipe == '06':
        model = UNet2DModel(in_channels=1, out_channels=1, block_out_channels=r['widths'], norm_num_groups=r['groups'])
        dls = DataLoaders.from_tensors(data['train'], data['test'], bs=r['bs'])
        objective = [DDPMCB()]
    else:
        model = init_ddpm(UNet(in_channels=1, out_channels=1, block_out_channels=r['widths'], norm_num_groups=r['groups']))
        dls = DataLoaders.from_tensors(data['train'], data['test'], bs=r['bs'], collate_fn=ddpm_collate(sched.alphabar))
        objective = [TrainCB()]
    prev = json.loads(out.read_text()) if out.exists() else {}   # what an earlier call finished (samples, FID), read before this one writes
    ck = run_dir/'checkpoint.pt'
    settings = dict(recipe=a.recipe, epochs=r['epochs'], scaling=a.scaling, n_train=len(data['train'][0]), n_valid=len(data['test'][0]))
    if ck.exists():
        old = safe_load(ck).get('settings')   # checkpoints written before settings were recorded: trusted as they are
        if old is not None and old != settings:
            sys.exit(f"{ck} belongs to a run with {old}, not {settings}: give another --run-dir, or delete {ck} to start again.")
    print(f"recipe {a.recipe}: " + (f'continuing from {ck}' if ck.exists() else f'new run, checkpoints in {ck}'), flush=True)
    metrics, timer = MetricsCB(), WallTimeCB()
    oc = partial(OneCycleLR, max_lr=r['lr'], total_steps=r['epochs']*len(dls.train))
    learn = Learner(model, dls, F.mse_loss, lr=r['lr'], opt_func=partial(optim.Adam, eps=r['adam_eps']),
                    cbs=[DeviceCB(), *objective, metrics, timer, BatchSchedCB(oc), CheckpointCB(ck, resume=ck.exists(), every_minutes=10, extra=dict(settings=settings))]
                        + ([ProgressCB()] if a.progress else []))
    learn.fit(r['epochs'])
    valid = [h['loss'] for h in metrics.history if h['train'] == 'eval']
    res = dict(recipe=a.recipe, **{**r, 'widths': list(r['widths'])}, n_train=len(data['train'][0]), n_valid=len(data['test'][0]),
               valid_mse=valid[-1], valid_mse_per_epoch=valid, history=metrics.history, train_minutes=round(timer.seconds/60, 1),
               params_m=round(sum(q.numel() for q in model.parameters())/1e6, 2), device=str(def_device),
               gpu=torch.cuda.get_device_name() if def_device.type == 'cuda' else None, cpu_threads=torch.get_num_threads(),
               machine=platform.machine(), torch=torch.__version__, command=' '.join(['python', *sys.argv]))
    print(f"recipe {a.recipe}: validation MSE {valid[-1]:.4f} after {r['epochs']} epochs ({timer.seconds/60:.0f} min); course {r['course_mse']}", flush=True)
    write_json(out, res)

    model.eval()
    eps_model = EpsOf(model) if a.recipe == '06' else model
    keys = ('recipe', 'epochs', 'n_train', 'n_valid', 'valid_mse', 'scaling')
    same = {k: prev.get(k, '-11' if k == 'scaling' else None) for k in keys} == {k: res[k] for k in keys}
    png = out.with_suffix('.png')
    if same and prev.get('n_samples') == a.n_samples and 'samples_finite' in prev and png.exists():
        print(f'samples: kept {png} (same run, same settings)', flush=True)
        res.update(n_samples=a.n_samples, samples_finite=prev['samples_finite'])
    else:
        g = torch.Generator().manual_seed(0)
        x = ddpm_sample(eps_model, (a.n_samples, 1, 32, 32), *sched, clip=(lo, 1.), generator=g, progress=a.progress).cpu()
        res.update(n_samples=a.n_samples, samples_finite=bool(torch.isfinite(x).all()))
        n = a.n_samples; cols = min(n, 8); rows = -(-n//cols)
        fig, axs = plt.subplots(rows, cols, figsize=(cols*1.2, rows*1.2 + 0.4), squeeze=False)
        for ax in axs.flat: ax.axis('off')
        for ax, im in zip(axs.flat, x): ax.imshow(im[0], cmap='gray', vmin=lo, vmax=1)
        fig.suptitle(f"{a.recipe}: {r['epochs']} epochs, valid MSE {valid[-1]:.4f}; 1000-step DDPM", fontsize=9)
        fig.tight_layout(); fig.savefig(png, dpi=90)
    write_json(out, res)

    if a.mse_draws:   # validation draws fresh t and ε each epoch: this measures how far that alone moves the MSE
        kept = prev.get('valid_mse_draws') if same else None
        if kept and len(kept['means']) == a.mse_draws:
            print(f"MSE draws: kept {kept}", flush=True); res['valid_mse_draws'] = kept
        else:
            x0s, means, within = data['test'][0], [], []
            for k in range(a.mse_draws):
                g, per = torch.Generator().manual_seed(100 + k), []
                with torch.no_grad():
                    for i in range(0, len(x0s), 500):
                        (xt, t), eps = noisify(x0s[i:i+500], sched.alphabar, generator=g)
                        per.append(((eps_model((xt.to(def_device), t.to(def_device))).cpu() - eps)**2).flatten(1).mean(1))
                per = torch.cat(per); means.append(per.mean().item()); within.append((per.std()/len(per)**0.5).item())
            m = torch.tensor(means)
            res['valid_mse_draws'] = dict(means=[round(v, 5) for v in means], mean=round(m.mean().item(), 5),
                                          std=round(m.std().item(), 5) if len(m) > 1 else None, se_within=round(max(within), 5))
            print(f"validation MSE over {a.mse_draws} draws of t and ε: {res['valid_mse_draws']}", flush=True)
        write_json(out, res)
    elif same and 'valid_mse_draws' in prev: res['valid_mse_draws'] = prev['valid_mse_draws']

    old = prev.get('fid') if same else None   # one entry per FID setting; a file from before there were several holds a dict
    res['fid'] = [old] if isinstance(old, dict) else list(old or [])
    if a.fid_n:   # 10_ddpm_v2's full-scale FID: DDIM from the trained model, scored with 08_fid's feature net
        key = dict(n=a.fid_n, ddim_steps=a.ddim_steps, eta=a.eta, feature=a.feature)
        done = next((f for f in res['fid'] if f['setting'] == key), None)
        if done is not None: print(f"FID: kept {done}", flush=True)
        else:
            from miniai.fid import ImageEval, feature_net
            ie = ImageEval(feature_net(scale=a.feature))
            chunks = range(0, a.fid_n, 256)
            it = progress_bar(chunks) if a.progress else chunks
            many = torch.cat([ddim_sample(eps_model, (min(256, a.fid_n - i), 1, 32, 32), sched.alphabar, steps=a.ddim_steps, eta=a.eta, clip=(lo, 1.),
                                          generator=torch.Generator().manual_seed(i), progress=False).cpu() for i in it])
            if lo == 0: many = many*2 - 1   # the feature net takes [-1, 1]
            real = fashion_mnist_tensors(scaling='-11', pad=True, n_train=a.fid_n, n_test=16)['train'][0]
            fs, fr = ie.evaluate(many), ie.evaluate(real)
            res['fid'].append(dict(setting=key, feature_net=fs['feature_net'], fid=round(fs['fid'], 2), kid=round(fs['kid'], 4),
                                   real_fid=round(fr['fid'], 2), real_kid=round(fr['kid'], 4)))
            print(f"FID (N = {a.fid_n}, DDIM {a.ddim_steps} steps, eta {a.eta:g}, feature net {fs['feature_net']}): {fs['fid']:.2f}; "
                  f"{a.fid_n} real training images: {fr['fid']:.2f}", flush=True)
    write_json(out, res)
    print(f'wrote {out} and {png}')

if __name__ == '__main__': main()
