"`miniai train --resume` after a SIGKILL ends with exactly the weights of a run that was never interrupted."
import json, signal, subprocess, sys, time
import torch
from miniai.checkpoint import BadFileError, load_weights, safe_load

ARGS = ['--preset', 'micro', '--n-train', '1024', '--bs', '32', '--lr', '5e-3', '--epochs', '2', '--seed', '7', '--quiet']
MINIAI = [sys.executable, '-c', 'import sys; from miniai.cli import main; sys.exit(main())']

def train(out, *extra, wait=True):
    cmd = [*MINIAI, 'train', '--out', str(out), *ARGS, *extra]
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]

def _wait_for(p, cond, what, timeout=1800):
    deadline = time.time() + timeout
    while not cond():
        assert p.poll() is None, p.stderr.read().decode()[-3000:]
        assert time.time() < deadline, f'{what} after {timeout} s'
        time.sleep(0.02)

def _mid(ck):
    try: return safe_load(ck).get('mid')
    except (FileNotFoundError, BadFileError): return None  # not written yet

def _same_run(a, b):
    for fn in ('model.safetensors',):
        wa, wb = load_weights(a/fn), load_weights(b/fn)
        assert wa.keys() == wb.keys()
        diff = [k for k in wa if not torch.equal(wa[k], wb[k])]
        assert not diff, f'resumed weights differ from the uninterrupted run in {len(diff)} tensors, e.g. {diff[:3]}'
    ha, hb = (json.loads((o/'config.json').read_text())['history'] for o in (a, b))
    assert ha == hb, (ha, hb)

def test_resume_after_kill_is_bit_for_bit(tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    train(a)
    p = train(b, wait=False)
    try:  # kill the run as soon as its first checkpoint is on disk: in its second epoch
        _wait_for(p, (b/'checkpoint.pt').exists, 'no checkpoint')
        p.send_signal(signal.SIGKILL); p.wait(timeout=30)
    finally:
        if p.poll() is None: p.kill()
    assert not (b/'model.safetensors').exists(), 'the run finished before it could be killed; make its epochs longer'
    train(b, '--resume')
    _same_run(a, b)

def test_resume_after_kill_inside_an_epoch_is_bit_for_bit(tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    train(a)
    # a checkpoint every 0.001 minutes = between almost every two batches; killed in its first epoch, once a few batches are saved
    p = train(b, '--checkpoint-minutes', '0.001', wait=False)
    try:
        _wait_for(p, lambda: (m := _mid(b/'checkpoint.pt')) is not None and m['iter'] >= 5, 'no mid-epoch checkpoint')
        p.send_signal(signal.SIGKILL); p.wait(timeout=30)
    finally:
        if p.poll() is None: p.kill()
    ck = safe_load(b/'checkpoint.pt')
    assert ck['mid']['iter'] >= 5 and not (b/'model.safetensors').exists(), 'the run was not killed inside an epoch'
    train(b, '--resume')
    _same_run(a, b)

def test_resume_with_other_options_is_refused(tmp_path):
    out = tmp_path/'r'
    cmd = [*MINIAI, 'train', '--out', str(out), '--preset', 'micro', '--n-train', '64', '--bs', '32', '--epochs', '1', '--quiet']
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    r = subprocess.run(cmd[:-1] + ['--lr', '3e-3', '--resume', '--quiet'], capture_output=True, text=True)
    assert r.returncode == 2 and 'started with lr=0.005, not 0.003' in r.stderr and 'Traceback' not in r.stderr, r.stderr
    # options left out on --resume are the run's own, not the defaults
    r = subprocess.run([*MINIAI, 'train', '--out', str(out), '--resume', '--quiet'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
