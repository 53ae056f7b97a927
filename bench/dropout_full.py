"""Full-scale run of 06_dropout: the ResNet with and without dropout, then test-time (MC) dropout as a confidence score.

Both nets use the notebook's full-scale recipe: widths 16 -> 512, all 60,000 training images, 5 epochs, bs 1024, AdamW
with OneCycle to lr 2e-2, seed 42; the dropout net adds Dropout2d after the stem and Dropout before the head, p = 0.1
each, and starts from the same weights. After the dropout net, 20 MC-dropout passes over the 10,000 test images give the
AUROC of each uncertainty score for "this prediction is wrong", the reliability diagram and the most/least certain
images. The dropout net goes first (`--nets` sets the order); the results file is written after each net and keeps
earlier calls' figures.

Each net checkpoints after every epoch under --run-dir (locked while the script runs) and a later call continues from
there (a killed run loses at most one epoch), so the hours this takes on a CPU can be spread over several sittings.

  .venv/bin/python bench/dropout_full.py                 # the figures in 06_dropout's prose
  .venv/bin/python bench/dropout_full.py --n-train 2000 --nfs 4 8 16 32 64 128 --epochs 2 --n-pass 3 --bs 256 \\
      --run-dir /tmp/dsmoke --out /tmp/dsmoke.json       # a smoke run
Writes bench/results/dropout_full.json and a PNG beside it.
"""
import argparse, json, time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
import matplotlib; matplotlib.use('Agg')
import matplotlib.pyplot as plt

from miniai.core import set_seed
from miniai.learner import DeviceCB, TrainLearner
from miniai.resnet import ResNet, train_classifier
from miniai.checkpoint import CheckpointCB
from miniai.dropout import resnet_dropout, mc_dropout_preds, auroc, entropy, reliability, plot_reliability
from _common import RESULTS, WallTimeCB, run_folder, write_json

SHORT = ['top', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'boot']


def train(name, make_model, a):
    "Train (or continue, or just reload a finished) run `name`; returns (learn, metrics, seconds)."
    ck = Path(a.run_dir)/f'{name}.pt'
    print(f'{name}: ' + (f'continuing from {ck}' if ck.exists() else f'new run, checkpoints in {ck}'), flush=True)
    timer = WallTimeCB()
    set_seed(42)
    learn, metrics = train_classifier(model=make_model(), epochs=a.epochs, nfs=tuple(a.nfs), n_train=a.n_train,
                                      bs=a.bs, lr=a.lr, progress=a.progress, seed=42,
                                      extra_cbs=[timer, CheckpointCB(ck, resume=ck.exists())])
    return learn, metrics, timer.seconds


def mc_analysis(learn, n_pass):
    "Test-time dropout over the whole test set: the AUROCs, calibration and error rates, plus what the pictures need."
    plearn = TrainLearner(learn.model, learn.dls, F.cross_entropy, cbs=[DeviceCB()])
    xv, yv = learn.dls.valid.dataset.tensors
    dl = DataLoader(TensorDataset(xv, yv), batch_size=512)
    bn_before = {k: v.clone() for k, v in learn.model.state_dict().items() if 'running' in k}
    set_seed(5); t0 = time.time()
    mc = mc_dropout_preds(plearn, n=n_pass, dl=dl)
    mc_seconds = time.time() - t0
    assert all(torch.equal(learn.model.state_dict()[k], v) for k, v in bn_before.items()), \
        'test-time dropout changed BatchNorm statistics'
    det = plearn.capture_preds(dl=dl)[0].float().softmax(-1)
    wrong_mc, wrong_det = mc.probs.argmax(1) != mc.targs, det.argmax(1) != mc.targs
    aucs = {'MC predictive entropy': auroc(mc.entropy, wrong_mc),
            'MC mutual information': auroc(mc.mutual_info, wrong_mc),
            'MC std of winning class': auroc(mc.std, wrong_mc), 'MC disagreement rate': auroc(mc.disagree, wrong_mc),
            'deterministic softmax entropy': auroc(entropy(det), wrong_det)}
    for k, v in aucs.items(): print(f'AUROC "uncertainty flags a wrong prediction", {k:30s} {v:.3f}', flush=True)
    def err(wrong): return round(wrong.float().mean().item(), 4)
    rel_mc, rel_det = reliability(mc.probs, mc.targs), reliability(det, mc.targs)
    order = mc.entropy.argsort(); k = len(order)//10
    summary = dict(mc_passes=n_pass, mc_images=len(xv), mc_minutes=round(mc_seconds/60, 1),
                   accuracy_deterministic=round(1 - err(wrong_det), 4), accuracy_mc_mean=round(1 - err(wrong_mc), 4),
                   auroc={k: round(v, 4) for k, v in aucs.items()}, ece_mc=round(rel_mc.ece, 4),
                   ece_deterministic=round(rel_det.ece, 4),
                   error_rate=dict(all=err(wrong_mc), surest_tenth=err(wrong_mc[order[:k]]),
                                   least_sure_tenth=err(wrong_mc[order[-k:]])))
    return summary, dict(mc=mc, xv=xv, wrong_mc=wrong_mc, aucs=aucs, rel_mc=rel_mc, rel_det=rel_det, order=order)


def plot(res, d, fn):
    "Entropy of right vs wrong predictions, the reliability diagram, and the surest and least sure test images."
    mc, xv, wrong_mc, order = d['mc'], d['xv'], d['wrong_mc'], d['order']
    fig = plt.figure(figsize=(12, 6.6), layout='constrained')
    top, bottom = fig.subfigures(2, 1, height_ratios=(1.3, 1))
    ax1, ax2 = top.subplots(1, 2)
    bins = torch.linspace(0, mc.entropy.max().item(), 30)
    ax1.hist(mc.entropy[~wrong_mc], bins, alpha=0.6, density=True, label='right')
    ax1.hist(mc.entropy[wrong_mc], bins, alpha=0.6, density=True, label='wrong')
    ax1.set_xlabel('predictive entropy (nats)'); ax1.set_ylabel('density'); ax1.legend()
    ax1.set_title(f"predictive entropy of right and wrong predictions: AUROC {d['aucs']['MC predictive entropy']:.3f}",
                  fontsize=9)
    plot_reliability(d['rel_mc'], ax2, 'MC dropout'); plot_reliability(d['rel_det'], ax2, 'deterministic')
    ax2.set_title('reliability diagram', fontsize=9)
    pred = mc.probs.argmax(1)
    axs = bottom.subplots(2, 12)
    for row, idx in enumerate([order[:12], order.flip(0)[:12]]):
        for ax, i in zip(axs[row], idx.tolist()):
            ax.imshow(xv[i, 0], cmap='gray'); ax.set_xticks([]); ax.set_yticks([])
            truth = '' if pred[i] == mc.targs[i] else f'\n(true {SHORT[mc.targs[i]]})'
            ax.set_title(SHORT[pred[i]] + truth, fontsize=7)
        axs[row, 0].set_ylabel(('surest', 'least sure')[row], fontsize=9)
    r = res['recipe']
    fig.suptitle(f"06_dropout: widths {r['nfs'][0]}->{r['nfs'][-1]}, {r['n_train']:,} images x {r['epochs']} epochs; "
                 f"test accuracy with dropout {res['accuracy_dropout']:.4f}; {res['mc_passes']} MC passes over "
                 f"{res['mc_images']:,} test images", fontsize=10)
    fig.savefig(fn, dpi=90)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--epochs', type=int, default=5)
    p.add_argument('--nfs', type=int, nargs='+', default=[16, 32, 64, 128, 256, 512])
    p.add_argument('--n-train', type=int, default=None, help='training images (default: all 60,000)')
    p.add_argument('--bs', type=int, default=1024)
    p.add_argument('--lr', type=float, default=2e-2)
    p.add_argument('--p', type=float, default=0.1, help='dropout probability of both layers')
    p.add_argument('--n-pass', type=int, default=20, help='MC-dropout passes over the test set')
    p.add_argument('--nets', nargs='+', default=['dropout', 'plain'], choices=['dropout', 'plain'],
                   help='which nets to train (or reload), in this order; the results file keeps what earlier calls '
                        'found')
    p.add_argument('--run-dir', default='runs/dropout_full')
    p.add_argument('--progress', action='store_true')
    p.add_argument('--out', default=str(RESULTS/'dropout_full.json'))
    a = p.parse_args()
    with run_folder(a.run_dir): run(a)


def run(a):
    "Train (or reload) each net of `a.nets` in the (locked) run folder, then the MC-dropout analysis; write the JSON."
    nfs, out = tuple(a.nfs), Path(a.out)
    recipe = dict(epochs=a.epochs, nfs=list(nfs), n_train=a.n_train or 60_000, bs=a.bs, lr=a.lr, p_stem=a.p,
                  p_head=a.p, seed=42)
    res = json.loads(out.read_text()) if out.exists() else {}
    if res.get('recipe') != recipe: res = {}            # results of another recipe are not merged
    res.update(recipe=recipe)
    res.pop('machine', None)                             # written afresh with this call's results
    for net in a.nets:
        make = (lambda: resnet_dropout(nfs, p_stem=a.p, p_head=a.p)) if net == 'dropout' else (lambda: ResNet(nfs))
        learn, m, secs = train(net, make, a)
        res.update({f'accuracy_{net}': m.history[-1]['accuracy'], f'history_{net}': m.history,
                    f'train_minutes_{net}': round(secs/60, 1)})
        print(f'{net}: test accuracy {res[f"accuracy_{net}"]:.4f} after {secs/60:.0f} min of training', flush=True)
        if net == 'dropout':
            summary, d = mc_analysis(learn, a.n_pass)
            res.update(summary); plot(res, d, out.with_suffix('.png'))
        write_json(out, res)
    if 'accuracy_plain' in res and 'accuracy_dropout' in res:
        print(f"test accuracy without dropout {res['accuracy_plain']:.4f}, with dropout {res['accuracy_dropout']:.4f}")
    print(f'wrote {out}' + (f' and {out.with_suffix(".png")}' if 'dropout' in a.nets else ''))


if __name__ == '__main__': main()
