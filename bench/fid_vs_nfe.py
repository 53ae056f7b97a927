"""Benchmark 3 of the main-job issue (and the Karras issue's): FID against the number of model evaluations (NFE).

For one trained model (a `miniai train` run folder), draws `--n` samples with every Karras-sigma sampler at NFE of about
10, 20, 50 and 100 (Heun makes 2 calls per step but the last, so it gets (NFE+1)//2 steps), plus ancestral DDPM over all
1000 steps and DDIM at 100 steps, all from the same seed, and scores each with FID and KID against the 10,000 test
images using the feature network shipped with miniai (its hash is in the output: compare only results with equal N and
hash).

  python bench/fid_vs_nfe.py --ckpt runs/demo                 # N=256
  python bench/fid_vs_nfe.py --ckpt runs/big --n 2048
Writes OUT/fid_vs_nfe.json and OUT/fid_vs_nfe.png (OUT defaults to the run folder).
"""
import argparse, time
from pathlib import Path

import matplotlib, matplotlib.ticker; matplotlib.use('Agg')
import matplotlib.pyplot as plt
from fastprogress import progress_bar

from miniai.settings import KARRAS_SAMPLERS
from miniai.recipes import default_steps, generate, load_run, nfe
from _common import FEATURES, image_eval, write_json


def plan(nfes=(10, 20, 50, 100), ddpm=True, ddim_steps=100):
    "(sampler, steps) pairs: each Karras-sigma sampler at about each NFE, then DDPM (all steps) and DDIM."
    runs = [(s, (k + 1)//2 if s == 'heun' else k) for s in KARRAS_SAMPLERS for k in nfes]
    if ddpm: runs.append(('ddpm', None))
    if ddim_steps: runs.append(('ddim', ddim_steps))
    return runs


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--ckpt', default='runs/demo', help='a `miniai train` run folder')
    p.add_argument('--n', type=int, default=256, help='samples per sampler (FID depends on N: compare only equal N)')
    p.add_argument('--nfe', type=int, nargs='+', default=[10, 20, 50, 100])
    p.add_argument('--no-ddpm', action='store_true', help='skip 1000-step DDPM (the slowest row)')
    p.add_argument('--ddim-steps', type=int, default=100)
    p.add_argument('--feature', choices=FEATURES, default='shipped', help='FID feature network (default: %(default)s)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', default=None)
    a = p.parse_args()
    model, info = load_run(a.ckpt)
    cfg = info.config
    ie = image_eval(a.feature)
    rows = []
    for smp, steps in progress_bar(plan(a.nfe, not a.no_ddpm, a.ddim_steps)):
        steps = steps or default_steps(smp, cfg)
        t0 = time.time()
        x = generate(model, info, sampler=smp, steps=steps, n=a.n, seed=a.seed, progress=False)
        secs = time.time() - t0
        ev = ie.evaluate(x)
        r = dict(sampler=smp, steps=steps, nfe=nfe(smp, steps), fid=round(ev['fid'], 3), kid=round(ev['kid'], 5),
                 sample_seconds=round(secs, 1))
        print(f"{smp:9s} steps {steps:5d}  NFE {r['nfe']:5d}  FID {r['fid']:8.2f}  KID {r['kid']:.4f}  ({secs:.0f}s)",
              flush=True)
        rows.append(r)
    res = dict(ckpt=str(a.ckpt), weights=info.weights, objective=cfg.objective, preset=cfg.preset,
               train_epochs=cfg.epochs, train_seconds=info.train_seconds, n=a.n, feature_net=ie.name,
               feature=a.feature, floor=ie.floor(a.n), seed=a.seed, rows=rows)
    out = Path(a.out or a.ckpt)
    write_json(out/'fid_vs_nfe.json', res)
    fig, ax = plt.subplots(figsize=(6, 4))
    for smp in KARRAS_SAMPLERS:
        rs = [r for r in rows if r['sampler'] == smp]
        ax.plot([r['nfe'] for r in rs], [r['fid'] for r in rs], 'o-', label=smp)
    for r in rows:
        if r['sampler'] in ('ddpm', 'ddim'):
            ax.plot(r['nfe'], r['fid'], 's', ms=8, label=f"{r['sampler']} ({r['nfe']} steps)")
    ax.set_xscale('log'); ax.set_yscale('log')
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel('model evaluations (NFE)'); ax.set_ylabel(f'FID (N={a.n})')
    ax.set_title(f"{cfg.objective} / {cfg.preset}: FID against NFE (feature net {ie.name})", fontsize=9)
    ax.legend(fontsize=8); fig.tight_layout(); fig.savefig(out/'fid_vs_nfe.png', dpi=100)
    print(f"wrote {out/'fid_vs_nfe.json'} and {out/'fid_vs_nfe.png'}")

if __name__ == '__main__': main()
