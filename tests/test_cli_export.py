"""Weights other tools read: a run folder holds safetensors, `miniai export` writes the U-Net in diffusers'
`save_pretrained` layout, and diffusers alone (no miniai, no network) loads it and computes what miniai computes.
Run folders written before `miniai.recipes` (flat config.json, model.pt) still sample."""
import json, os, subprocess, sys
from pathlib import Path

import torch

from miniai.checkpoint import atomic_save, load_weights

MINIAI = [sys.executable, '-c', 'import sys; from miniai.cli import main; sys.exit(main())']
DIFFUSERS_ONLY = '''
import sys, torch
from diffusers import UNet2DModel
u = UNet2DModel.from_pretrained(sys.argv[1]).eval()
x, t = torch.load(sys.argv[2])
with torch.no_grad(): torch.save(u(x, t).sample, sys.argv[3])
print(sorted(m for m in sys.modules if m.split('.')[0] == 'miniai'))
'''


def miniai(*args):
    r = subprocess.run([*MINIAI, *map(str, args)], capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    return r


def test_export_loads_in_diffusers_offline(tmp_path):
    run, hf = tmp_path/'run', tmp_path/'hf'
    miniai('train', '--out', run, '--n-train', '64', '--bs', '32', '--ema', '--quiet')
    assert {'model.safetensors', 'ema.safetensors', 'config.json', 'checkpoint.pt'} <= {p.name for p in run.iterdir()}
    miniai('export', '--ckpt', run, '--out', hf)
    assert {'config.json', 'diffusion_pytorch_model.safetensors', 'miniai.json'} <= {p.name for p in hf.iterdir()}
    meta = json.loads((hf/'miniai.json').read_text())
    assert meta['objective'] == 'karras' and meta['weights'] == 'ema.safetensors' and meta['sigma_data'] > 0
    x, t = torch.randn(3, 1, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([-1.2, 0.0, 1.1])
    torch.save((x, t), tmp_path/'in.pt')
    env = dict(os.environ, HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', TRANSFORMERS_OFFLINE='1',
               HTTP_PROXY='http://127.0.0.1:9', HTTPS_PROXY='http://127.0.0.1:9')   # any network use would fail
    r = subprocess.run([sys.executable, '-c', DIFFUSERS_ONLY, str(hf), str(tmp_path/'in.pt'), str(tmp_path/'out.pt')],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().splitlines()[-1] == '[]', 'the diffusers side imported miniai'
    from miniai.recipes import load_run
    model, info = load_run(run, device='cpu')
    assert info.weights == 'ema.safetensors'
    with torch.no_grad(): want = model(x, t)
    torch.testing.assert_close(torch.load(tmp_path/'out.pt'), want, rtol=0, atol=1e-6)
    ema = load_weights(run/'ema.safetensors')
    assert all(torch.equal(ema[k], v) for k, v in model.state_dict().items())


def test_old_run_folder_still_samples_and_refuses_to_resume_in_one_line(tmp_path):
    from miniai.recipes import build_model
    from miniai.settings import RunConfig
    old = tmp_path/'old'; old.mkdir()
    torch.manual_seed(0)
    model = build_model(RunConfig())
    atomic_save({'model': model.state_dict()}, old/'model.pt')
    (old/'config.json').write_text(json.dumps(dict(
        objective='karras', preset='micro', unet={}, sigma_data=0.66, scaling='-11', size=32, epochs=1, bs=64, lr=5e-3,
        mp=False, seed=42, n_train=60000, history=[{'loss': 0.2, 'epoch': 0, 'train': 'eval'}])))
    miniai('sample', '--ckpt', old, '--n', '2', '--steps', '2', '--quiet')
    d = torch.load(old/'samples.pt', weights_only=True)
    assert d['weights'] == 'model.pt' and d['samples'].shape == (2, 1, 32, 32)
    # a checkpoint of the old CheckpointCB lacks what today's resumes from: one line, not a traceback
    atomic_save({'model': model.state_dict(), 'opt': None, 'epoch': 0}, old/'checkpoint.pt')
    r = subprocess.run([*MINIAI, 'train', '--out', str(old), '--resume', '--quiet'], capture_output=True, text=True,
                       timeout=1800)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and 'Traceback' not in r.stderr, r.stderr[-3000:]
    assert f'{old/"checkpoint.pt"} is not a miniai checkpoint' in lines[0], lines
