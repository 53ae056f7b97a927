"""Faults a user hits, injected into the real `miniai` command (subprocesses) and the library: Ctrl-C while training,
SIGKILL while a checkpoint is written, a full disk while it is written, a read-only output folder, two trainings into
one folder, damaged and foreign files (checkpoint, config.json, weights, a samples file, MINIAI_DATA without data),
and a seeded random pass over command-line arguments.

Every failure must be exit code 2 with one line on stderr naming the problem (Ctrl-C: exit 130 and how to resume), never
a traceback; no fault may lose finished work. The counts go to bench/results/faults.json (for the README):

  MINIAI_SCALE=ci python -m pytest -q tests/test_faults.py
"""
import contextlib, io, json, os, random, resource, shutil, signal, subprocess, sys, tempfile, time
from pathlib import Path

import pytest
import torch

from miniai.checkpoint import atomic_save, atomic_write_json, load_weights, safe_load

ROOT = Path(__file__).resolve().parents[1]
MINIAI = [sys.executable, '-c', 'import sys; from miniai.cli import main; sys.exit(main())']
TINY = ['--n-train', '256', '--bs', '32', '--quiet']            # 8 batches: a run of a few seconds
LONG = ['--n-train', '512', '--bs', '32', '--epochs', '3', '--seed', '3', '--quiet']   # 3 epochs of 16 batches
COUNTS = dict(faults_injected=0, bad_inputs_tried=0, tracebacks_seen=0, runs_that_lost_finished_work=0)
RAN = []


def _record(stderr: str):
    if 'Traceback' in stderr: COUNTS['tracebacks_seen'] += 1


def miniai(*args, env=None, **kw) -> subprocess.CompletedProcess:
    "Run the real command in a fresh process; its stderr is checked for tracebacks."
    r = subprocess.run([*MINIAI, *map(str, args)], capture_output=True, text=True, env=env, timeout=1800, **kw)
    _record(r.stderr)
    return r


def start(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([*MINIAI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def finish(p: subprocess.Popen, timeout=1800):
    out, err = p.communicate(timeout=timeout)
    _record(err)
    return p.returncode, out, err


def one_line_error(code, err, *msgs, bad_input=True):
    "Exit 2, one line on stderr that says each of `msgs` (besides one-line warnings), no traceback."
    COUNTS['bad_inputs_tried'] += bad_input
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith('miniai ') or ': error: ' in ln]
    assert code == 2 and len(lines) == 1 and 'Traceback' not in err, (code, err[-3000:])
    for m in msgs: assert m in err, (m, err)
    return lines[0]


def wait_for(p, cond, what, timeout=1800):
    deadline = time.time() + timeout
    while not cond():
        if p.poll() is not None: raise AssertionError(f'{what}: the process ended (exit {p.returncode}): {p.stderr.read()[-3000:]}')
        assert time.time() < deadline, f'{what} after {timeout} s'
        time.sleep(0.02)


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def in_process(*argv):
    "`main(argv)` in this process: (exit code, stderr); an exception that escapes is a traceback."
    from miniai.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: main([str(a) for a in argv]); code = 0
        except SystemExit as e: code = e.code
        except BaseException:
            COUNTS['tracebacks_seen'] += 1
            raise
    return code, err.getvalue()


@pytest.fixture(scope='module')
def shared():
    "A scratch folder with a finished tiny run."
    base = Path(tempfile.mkdtemp(prefix='miniai-faults-'))
    r = miniai('train', '--out', base/'done', *TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    yield base
    shutil.rmtree(base, ignore_errors=True)
    out = ROOT/'bench'/'results'/'faults.json'
    atomic_write_json(out, dict(COUNTS, tests=RAN, command='MINIAI_SCALE=ci python -m pytest -q tests/test_faults.py'))


@pytest.fixture(scope='module')
def baseline(shared):
    "A 3-epoch run that nothing interrupted: what every interrupted and resumed run must end with, bit for bit."
    r = miniai('train', '--out', shared/'baseline', *LONG)
    assert r.returncode == 0, r.stderr[-3000:]
    return shared/'baseline'


def resume_and_compare(run: Path, baseline: Path):
    "Resume `run` to its end; it must equal the uninterrupted baseline (else it lost finished work)."
    r = miniai('train', '--out', run, '--resume', '--quiet')
    ok = r.returncode == 0 and same_weights(run/'model.safetensors', baseline/'model.safetensors')
    COUNTS['runs_that_lost_finished_work'] += not ok
    assert ok, r.stderr[-3000:]
    assert json.loads((run/'config.json').read_text())['history'] == json.loads((baseline/'config.json').read_text())['history']


# --- faults while training ------------------------------------------------------------------------------------------
def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(shared, baseline, tmp_path):
    RAN.append('ctrl_c')
    run = tmp_path/'run'
    p = start('train', '--out', run, *LONG)
    wait_for(p, (run/'checkpoint.pt').exists, 'no first checkpoint')
    time.sleep(random.Random(0).uniform(0, 0.5))
    p.send_signal(signal.SIGINT); COUNTS['faults_injected'] += 1
    code, out, err = finish(p)
    assert code == 130 and 'Traceback' not in err, (code, err[-3000:])
    last = err.strip().splitlines()[-1]
    assert f'resume with `miniai train --out {run} --resume`' in last, err
    assert json.loads((run/'config.json').read_text())['status'] == 'stopped'
    assert safe_load(run/'checkpoint.pt')['epoch'] >= 0 and not (run/'model.safetensors').exists()
    assert not (run/'.miniai.lock').exists()
    resume_and_compare(run, baseline)


def test_sigkill_while_a_checkpoint_is_written_keeps_one_to_resume_from(shared, baseline, tmp_path):
    RAN.append('sigkill_during_save')
    run = tmp_path/'run'
    p = start('train', '--out', run, *LONG, '--checkpoint-minutes', '0.0001')    # a save between every two batches
    try:
        wait_for(p, lambda: (run/'checkpoint.pt').exists() and any(run.glob('.checkpoint.pt.*.tmp')), 'no save under way')
        p.send_signal(signal.SIGKILL); COUNTS['faults_injected'] += 1
        p.wait(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    safe_load(run/'checkpoint.pt')                      # the previous checkpoint is whole
    resume_and_compare(run, baseline)                   # ...and the run goes on from it (taking over the stale lock)


def _limit_file_size(n):
    def f():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))
    return f


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(shared, baseline, tmp_path):
    RAN.append('full_disk')
    run = tmp_path/'run'
    p = start('train', '--out', run, *LONG)
    try:
        wait_for(p, (run/'checkpoint.pt').exists, 'no first checkpoint')
        p.send_signal(signal.SIGKILL); p.wait(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    before = (run/'checkpoint.pt').read_bytes()
    # resumed with files limited to half a checkpoint: the next checkpoint cannot be written, as on a full disk
    r = subprocess.run([*MINIAI, 'train', '--out', str(run), '--resume', '--quiet'], capture_output=True, text=True,
                       preexec_fn=_limit_file_size(len(before)//2), timeout=1800)
    COUNTS['faults_injected'] += 1; _record(r.stderr)
    one_line_error(r.returncode, r.stderr, 'checkpoint.pt', 'the disk is full', 'unchanged', bad_input=False)
    assert (run/'checkpoint.pt').read_bytes() == before and not list(run.glob('.checkpoint.pt.*.tmp'))
    resume_and_compare(run, baseline)                   # with space again, nothing finished was lost


def _without_root_override() -> list:
    "A command prefix under which file modes apply: root ignores them unless it gives up CAP_DAC_OVERRIDE."
    if os.geteuid() != 0: return []
    if not shutil.which('setpriv'): pytest.skip('running as root without setpriv: a read-only folder cannot be simulated')
    return ['setpriv', '--bounding-set', '-dac_override,-dac_read_search', '--']


def test_read_only_output_folder(shared):
    RAN.append('read_only_folder')
    ro = shared/'ro'; ro.mkdir(); ro.chmod(0o555)
    for args in (['train', '--out', ro/'run', *TINY],
                 ['sample', '--ckpt', shared/'done', '--out', ro, '--n', '2', '--steps', '2', '--quiet'],
                 ['sample', '--ckpt', shared/'done', '--out', ro/'new', '--n', '2', '--steps', '2', '--quiet']):
        r = subprocess.run([*_without_root_override(), *MINIAI, *map(str, args)], capture_output=True, text=True, timeout=1800)
        COUNTS['faults_injected'] += 1; _record(r.stderr)
        one_line_error(r.returncode, r.stderr, str(ro), 'Permission denied', bad_input=False)


def test_a_second_training_in_a_folder_in_use_stops_at_once(shared, tmp_path):
    RAN.append('two_trainings')
    run, args = tmp_path/'run', ['--n-train', '1024', '--bs', '32', '--epochs', '4', '--quiet']   # long enough to be busy
    p = start('train', '--out', run, *args)
    try:
        wait_for(p, (run/'config.json').exists, 'the first run never started')
        for extra in ([], ['--resume']):
            t0 = time.time()
            r = miniai('train', '--out', run, *args, *extra); COUNTS['faults_injected'] += 1
            one_line_error(r.returncode, r.stderr, f'{run} is in use by process {p.pid}', bad_input=False)
            assert time.time() - t0 < 120, 'the second run did not stop at once'
        assert p.poll() is None, 'the first run was disturbed'
        p.send_signal(signal.SIGINT)
        code, _, err = finish(p)
        assert code == 130 and 'Traceback' not in err, err[-3000:]
    finally:
        if p.poll() is None: p.kill()
    safe_load(run/'checkpoint.pt')                      # the first run's checkpoint is whole, and only it wrote there


# --- damaged and foreign files ---------------------------------------------------------------------------------------
def _copy_run(shared, tmp_path) -> Path:
    run = tmp_path/'run'
    shutil.copytree(shared/'done', run)
    return run


def test_damaged_checkpoint_is_named_and_blames_no_callback(shared, tmp_path):
    RAN.append('damaged_checkpoint')
    run = _copy_run(shared, tmp_path)
    ck = run/'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:1000]); COUNTS['faults_injected'] += 1
    r = miniai('train', '--out', run, *TINY, '--resume')
    line = one_line_error(r.returncode, r.stderr, str(ck), 'damaged', f'the finished model is in {run/"model.safetensors"}',
                          'start again with another --out')
    assert 'callback' not in line.lower(), line
    code, err = in_process('sample', '--ckpt', ck, '--n', '2', '--steps', '2', '--quiet')
    one_line_error(code, err, str(ck), 'damaged')
    w = run/'model.safetensors'
    w.write_bytes(w.read_bytes()[:5000]); COUNTS['faults_injected'] += 1
    code, err = in_process('sample', '--ckpt', run, '--n', '2', '--steps', '2', '--quiet')
    one_line_error(code, err, str(w), 'damaged')
    code, err = in_process('export', '--ckpt', run)
    one_line_error(code, err, str(w), 'damaged')


def test_damaged_or_foreign_config_is_named(shared, tmp_path):
    RAN.append('damaged_config')
    run = _copy_run(shared, tmp_path)
    cfg, good = run/'config.json', (run/'config.json').read_text()
    cfg.write_text('{\n "config": '); COUNTS['faults_injected'] += 1
    r = miniai('train', '--out', run, *TINY, '--resume')
    one_line_error(r.returncode, r.stderr, str(cfg), 'is damaged: it is not valid JSON')
    for text, msg in [('[1, 2, 3]', 'is not the config of a miniai run'), ('\x00\xff garbage', 'is damaged'),
                      (good.replace('"lr": 0.005', '"lr": -1'), 'lr=-1.0 must be greater than 0'),
                      (good.replace('"seed": 42', '"sed": 42'), "unknown setting(s) ['sed']")]:
        cfg.write_text(text); COUNTS['faults_injected'] += 1
        code, err = in_process('sample', '--ckpt', run, '--n', '2', '--steps', '2', '--quiet')
        one_line_error(code, err, str(cfg), msg)


def test_miniai_data_without_the_idx_files_is_an_error(shared, tmp_path, monkeypatch):
    RAN.append('miniai_data')
    empty = tmp_path/'no-data'; empty.mkdir()
    r = miniai('train', '--out', tmp_path/'run', *TINY, env=dict(os.environ, MINIAI_DATA=str(empty)))
    COUNTS['faults_injected'] += 1
    one_line_error(r.returncode, r.stderr, f'MINIAI_DATA={empty}')
    monkeypatch.setenv('MINIAI_DATA', str(empty))
    from miniai.datasets import DataError, fashion_mnist_tensors
    with pytest.raises(DataError, match='MINIAI_DATA'): fashion_mnist_tensors(n_train=8)


def test_files_that_are_not_samples_files(shared, tmp_path):
    RAN.append('not_samples')
    notes = tmp_path/'notes.txt'; notes.write_text('101 things to do\n')
    r = miniai('eval', '--samples', notes, '--feature', 'ci')
    one_line_error(r.returncode, r.stderr, str(notes), 'is not a PyTorch checkpoint')
    x = torch.rand(4, 1, 32, 32)*2 - 1
    cases = {'empty.pt': b'', 'folder': None}
    for name, data in cases.items():
        if data is None: (tmp_path/name).mkdir()
        else: (tmp_path/name).write_bytes(data)
    atomic_save({'images': x}, tmp_path/'foreign.pt')
    atomic_save({'samples': x[:, :, :28, :28]}, tmp_path/'small.pt')
    atomic_save({'samples': (x*127).to(torch.uint8)}, tmp_path/'ints.pt')
    for name, msg in [('empty.pt', 'the file is empty'), ('folder', 'is a folder'), ('foreign.pt', "without a 'samples' tensor"),
                      ('small.pt', 'expected float images'), ('ints.pt', 'expected float images'),
                      ('nope.pt', 'no such samples file')]:
        code, err = in_process('eval', '--samples', tmp_path/name, '--feature', 'ci')
        one_line_error(code, err, str(tmp_path/name), msg)


# --- a random pass over the command line ----------------------------------------------------------------------------
BAD_NUMBERS = ['0', '-1', '', 'x', '1.5', 'nan', 'inf', '-inf', '1e309', '0x10', str(10**30)]
TRAIN_OPTS = {'--epochs': ['0', '-1', '10001', '', '2.5', 'abc'], '--bs': ['0', '-3', '4097', '', 'nan', '1e3'],
              '--lr': ['0', '-0.001', 'nan', 'inf', '1e309', '', '2', 'abc'], '--n-train': ['0', '-1', '60001', str(10**30), ''],
              '--seed': ['-1', str(2**32), '', '3.5'], '--preset': ['', 'huge', 'MICRO', 'micro '], '--objective': ['', 'edm'],
              '--schedule': ['', 'quadratic'], '--lr-sched': ['', 'cosine'], '--recipe': ['', 'best'],
              '--checkpoint-minutes': ['0', '-1', 'inf', ''], '--warmup': ['0', ''], '--t-ref': ['0'], '--ema-power': ['0', '-1'],
              '--p-std': ['-0.1', '11'], '--p-mean': ['nan', '11'], '--n-steps': ['1', '10001']}
TRAIN_OK = [['--bs', '1'], ['--seed', '0'], ['--seed', str(2**32 - 1)], ['--n-train', '1'], ['--ema'], ['--flip'],
            ['--lr-sched', 'invsqrt', '--warmup', '1', '--t-ref', '1'], ['--p-std', '0'], ['--checkpoint-minutes', '1e-9'],
            ['--objective', 'ddpm', '--n-steps', '2'], ['--lr', '1']]
SAMPLE_OPTS = {'--n': ['0', '-1', '50001', '', 'x'], '--steps': ['0', '1001', '', '2.0'], '--sampler': ['', 'plms', 'DDIM'],
               '--sigma-min': ['0', '-1', '81', 'nan'], '--sigma-max': ['0', '1001', 'inf'], '--seed': ['-1', ''], '--bs': ['0'],
               '--weights': ['', 'best'], '--ckpt': ['', 'NOPE']}
SAMPLE_OK = [['--sampler', 'heun'], ['--sampler', 'euler_a'], ['--sampler', 'lms'], ['--sampler', 'ddim'], ['--steps', '1'],
             ['--n', '1'], ['--sigma-min', '79'], ['--seed', str(2**32 - 1)], ['--weights', 'model'], ['--bs', '1']]
CLASSIFY_OPTS = {'--nfs': ['', 'a,b', '8', '0,8', '8,2000', '8,' * 9 + '8'], '--bs': ['0'], '--lr': ['0', 'nan'], '--epochs': ['0'],
                 '--n-train': ['0', '60001']}
TOP = [[], ['frobnicate'], ['--frobnicate'], ['train', 'extra'], ['sample', '--lr', '1'], ['eval', '--feature', 'huge'],
       ['eval', '--feature', ''], ['export', '--weights', 'best'], ['train', '--lr'], ['train', '--ema=1']]


def _cases(rng, shared, tmp):
    "About forty argument lists: mostly bad values (one or two per case), some valid ones at their limits, all quick."
    for i in range(14):
        args = ['train', '--out', tmp/f't{i}', *TINY]
        for opt in rng.sample(sorted(TRAIN_OPTS), rng.choice((1, 2))): args += [opt, rng.choice(TRAIN_OPTS[opt])]
        yield args
    for i, ok in enumerate(rng.sample(TRAIN_OK, 4)):
        yield ['train', '--out', tmp/f'ok{i}', '--n-train', '16', '--bs', '8', '--quiet', *ok]
    for i in range(10):
        args = ['sample', '--ckpt', shared/'done', '--out', tmp/f's{i}', '--n', '2', '--steps', '2', '--quiet']
        for opt in rng.sample(sorted(SAMPLE_OPTS), rng.choice((1, 2))): args += [opt, rng.choice(SAMPLE_OPTS[opt])]
        yield args
    for ok in rng.sample(SAMPLE_OK, 4):
        yield ['sample', '--ckpt', shared/'done', '--out', tmp/'sok', '--n', '2', '--steps', '2', '--quiet', *ok]
    for i in range(5):
        opt = rng.choice(sorted(CLASSIFY_OPTS))
        yield ['classify', '--out', tmp/f'c{i}', '--n-train', '64', '--quiet', opt, rng.choice(CLASSIFY_OPTS[opt])]
    yield from rng.sample(TOP, 6)


def test_random_command_lines_exit_0_or_one_line(shared, tmp_path):
    RAN.append('random_arguments')
    rng = random.Random(23)
    seen = []
    for args in _cases(rng, shared, tmp_path):
        code, err = in_process(*args)
        if code != 0: one_line_error(code, err)
        seen.append((code, [str(a) for a in args]))
    assert len(seen) >= 40 and any(c == 0 for c, _ in seen) and sum(c == 2 for c, _ in seen) >= 30, seen
