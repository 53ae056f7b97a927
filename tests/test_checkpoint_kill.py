"""Faults around saving and loading, with real processes: SIGKILL during a save, a full disk (RLIMIT_FSIZE, and a
real 1 MB tmpfs where this process may mount one), a folder that cannot be written, damaged or foreign files, and two
writers on one run folder."""
import os, shutil, signal, subprocess, sys, time, textwrap
from pathlib import Path

import pytest
import torch
from miniai.checkpoint import (atomic_save, safe_load, load_checkpoint, save_weights, load_weights, RunLock,
                               RunLockedError, BadFileError, SaveError)

WRITER = textwrap.dedent('''
    import sys, torch
    from miniai.checkpoint import atomic_save
    path = sys.argv[1]
    i = 1
    while True:  # keep rewriting a large checkpoint until killed
        atomic_save({'marker': torch.tensor(i), 'big': torch.full((25_000_000,), float(i))}, path)
        i += 1
''')

def test_kill_while_saving_keeps_previous_checkpoint(tmp_path):
    ck = tmp_path/'ck.pt'
    atomic_save({'marker': torch.tensor(0), 'big': torch.zeros(25_000_000)}, ck)
    p = subprocess.Popen([sys.executable, '-c', WRITER, str(ck)])
    try:
        deadline = time.time() + 60
        while not list(tmp_path.glob('.ck.pt.*.tmp')):  # wait until a save is under way
            assert time.time() < deadline, 'the writer never started saving'
            assert p.poll() is None, 'the writer died'
            time.sleep(0.01)
        time.sleep(0.05)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None: p.kill()
    d = safe_load(ck)  # must load: either the first checkpoint or a later complete one
    m = d['marker'].item()
    assert torch.all(d['big'] == m), 'a checkpoint mixes two saves'
    assert d['big'].numel() == 25_000_000

def test_safe_load_refuses_pickled_objects(tmp_path):
    fn = tmp_path/'obj.pt'
    torch.save({'model': torch.nn.Linear(2, 2)}, fn)
    with pytest.raises(BadFileError, match='refused to load, it needs unsafe unpickling'): safe_load(fn)

FULL_DISK = textwrap.dedent('''
    import resource, signal, sys, torch
    from miniai.checkpoint import atomic_save, save_weights, SaveError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit then fails with EFBIG instead of killing us
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
    for save in (lambda: atomic_save({'w': torch.ones(1_000_000)}, sys.argv[1]),
                 lambda: save_weights({'w': torch.ones(1_000_000)}, sys.argv[1] + '.safetensors')):
        try: save()
        except SaveError as e: print(e)
''')

def _check_full_disk(out: str, ck: Path):
    lines = out.strip().splitlines()
    assert len(lines) == 2, out
    assert lines[0].startswith(f'cannot save {ck}: the disk is full') and 'the previous ck.pt is unchanged' in lines[0], out
    assert lines[1].startswith(f'cannot save {ck}.safetensors: the disk is full') and 'nothing was written' in lines[1], out
    assert torch.equal(safe_load(ck)['w'], torch.zeros(10))   # the previous checkpoint is still there and loads
    assert sorted(p.name for p in ck.parent.iterdir()) == ['ck.pt'], 'a temporary file was left behind'

def test_full_disk_file_size_limit(tmp_path):
    ck = tmp_path/'ck.pt'
    atomic_save({'w': torch.zeros(10)}, ck)
    r = subprocess.run([sys.executable, '-c', FULL_DISK, str(ck)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    _check_full_disk(r.stdout, ck)

def test_full_disk_tmpfs(tmp_path):
    "A real full file system (ENOSPC): a 1 MB tmpfs, where this process is allowed to mount one (root on Linux)."
    mnt = tmp_path/'small'; mnt.mkdir()
    if os.geteuid() != 0 or shutil.which('mount') is None: pytest.skip('mounting a tmpfs needs root')
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mnt)], capture_output=True).returncode:
        pytest.skip('this process may not mount a tmpfs')
    try:
        ck = mnt/'ck.pt'
        atomic_save({'w': torch.zeros(10)}, ck)
        script = FULL_DISK.replace('resource.setrlimit', '(lambda *a: None)')   # no size limit: the disk itself fills up
        r = subprocess.run([sys.executable, '-c', script, str(ck)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-3000:]
        assert '(No space left on device)' in r.stdout, r.stdout
        _check_full_disk(r.stdout, ck)
    finally: subprocess.run(['umount', str(mnt)])

def test_read_only_folder(tmp_path):
    if os.geteuid() != 0: ro = tmp_path/'ro'; ro.mkdir(); ro.chmod(0o555)
    else: ro = Path('/sys')   # root may write into any ordinary folder, but not into sysfs
    with pytest.raises(SaveError, match=f'cannot save {ro}/ck.pt: the folder {ro} is not writable'): atomic_save({}, ro/'ck.pt')

def test_damaged_and_foreign_files(tmp_path):
    atomic_save({'model': {'w': torch.randn(10_000)}, 'epoch': 0}, tmp_path/'ck.pt')
    raw = (tmp_path/'ck.pt').read_bytes()
    (tmp_path/'cut.pt').write_bytes(raw[:1000])
    (tmp_path/'notes.txt').write_text('not a checkpoint')
    for fn, expect in (('cut.pt', 'is damaged (truncated?)'), ('notes.txt', 'is not a PyTorch checkpoint')):
        with pytest.raises(BadFileError) as ei: safe_load(tmp_path/fn)
        msg = str(ei.value)
        assert msg.startswith(f'{tmp_path/fn} {expect}') and '\n' not in msg, msg
        assert 'PytorchStreamReader' not in msg and ei.value.__cause__ is None
    save_weights({'w': torch.ones(100)}, tmp_path/'w.safetensors')
    (tmp_path/'w_cut.safetensors').write_bytes((tmp_path/'w.safetensors').read_bytes()[:100])
    with pytest.raises(BadFileError, match='is damaged'): load_weights(tmp_path/'w_cut.safetensors')
    with pytest.raises(BadFileError, match='not a miniai checkpoint'): load_checkpoint(tmp_path/'ck.pt', ('model', 'opt'))
    assert torch.equal(load_weights(tmp_path/'w.safetensors')['w'], torch.ones(100))

HOLDER = textwrap.dedent('''
    import sys, time
    from miniai.checkpoint import RunLock
    RunLock(sys.argv[1]).acquire()
    print('locked', flush=True)
    time.sleep(120)
''')

def test_one_writer_per_run_folder(tmp_path):
    run = tmp_path/'run'
    holder = subprocess.Popen([sys.executable, '-c', HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        # a second process is refused at once, with one line naming the first
        r = subprocess.run([sys.executable, '-c', HOLDER, str(run)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 1
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith(f'miniai.checkpoint.RunLockedError: {run} is in use by process {holder.pid} on '), last
        assert ', since 20' in last
        with pytest.raises(RunLockedError, match=f'process {holder.pid}'): RunLock(run).acquire()
    finally:
        holder.kill(); holder.wait()
    # the holder died without releasing: its lock is taken over, with a warning that names it
    with pytest.warns(RuntimeWarning, match=f'took over the lock on {run} from process {holder.pid}'):
        with RunLock(run) as lk: assert lk.stale['pid'] == holder.pid
    assert not (run/'.miniai.lock').exists()
