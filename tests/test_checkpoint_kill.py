"A process killed (SIGKILL) while writing a checkpoint leaves the previous checkpoint loadable."
import os, signal, subprocess, sys, time, textwrap
from pathlib import Path
import torch
from miniai.learner import atomic_save, safe_load

WRITER = textwrap.dedent('''
    import sys, torch
    from miniai.learner import atomic_save
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
    try: safe_load(fn)
    except ValueError as e: assert 'refused to load' in str(e)
    else: raise AssertionError('an arbitrary pickled object was loaded')
