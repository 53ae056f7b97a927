"""The long-running bench scripts at toy sizes: each must run end to end, write sane JSON (with the machine it ran on),
and (where it saves stages) continue from what an earlier call left instead of starting again, holding its run folder's
lock meanwhile. The figures themselves come from full runs, not from here."""
import json, math, os, subprocess, sys
from pathlib import Path

from miniai.checkpoint import RunLock

BENCH = Path(__file__).parents[1]/'bench'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}   # toy sizes: one thread is fastest, and kind to a shared machine

def call(script, *args, timeout=900):
    return subprocess.run([sys.executable, str(BENCH/script), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=ENV)

def run(script, *args, timeout=900):
    r = call(script, *args, timeout=timeout)
    assert r.returncode == 0, f'{script} failed:\n{r.stderr[-3000:]}'
    return r.stdout

def check_machine(d):
    m = d['machine']
    assert m['device'] and m['cpu_threads'] >= 1 and m['torch'] and 'bench/' in m['command'], m

def test_quality_per_minute(tmp_path):
    out = tmp_path/'q.json'
    run('quality_per_minute.py', '--recipes', 'miniai', '--minutes', 0.05, '--n', 8, '--out', out)
    d = json.loads(out.read_text())
    assert d['complete'] and d['n'] == 8 and len(d['rows']) == 1
    check_machine(d)
    row = d['rows'][0]
    assert row['train_steps'] >= 1 and 2.5 <= row['train_seconds'] < 30, row   # stops once the 3 s budget is spent
    assert math.isfinite(row['fid']) and row['nfe'] == 20 and row['n'] == 8 and row['feature_net'], row
    assert row['objective'] == 'karras' and row['preset'] == 'micro' and row['floor'] > 0, row
    assert out.with_suffix('.png').stat().st_size > 1000

def test_quality_per_minute_image_budget(tmp_path):
    "A budget in images (minutes x the idle rate) trains the same batches however busy the machine; and the rate."
    out = tmp_path/'q.json'
    run('quality_per_minute.py', '--recipes', 'miniai', '--minutes', 0.05, '--img-per-s', 200, '--n', 8,
        '--sampler', 'euler', '--steps', 3, '--sigma-min', 0.05, '--threads', 1, '--adam-eps', 1e-3, '--out', out)
    row = json.loads(out.read_text())['rows'][0]
    assert row['adam_eps'] == 1e-3, row                                        # the recipe's own is 1e-5
    assert (row['train_steps'], row['images_seen']) == (10, 640), row          # 600 images at bs 64: ten batches
    assert row['lr_schedule'] == 'one-cycle over 600 images' and row['img_per_s_idle'] == 200, row
    assert (row['sampler'], row['nfe'], row['sigma_min'], row['threads']) == ('euler', 3, 0.05, 1), row
    assert 0 < row['train_loss_last10'] <= row['train_loss_max'] and row['train_loss_first10'] > 0, row
    cal = tmp_path/'cal.json'
    stdout = run('quality_per_minute.py', '--recipes', 'miniai', '--calibrate', 2, '--threads', 1, '--out', cal)
    c = json.loads(cal.read_text())['calibration'][0]
    assert c['recipe'] == 'miniai' and c['threads'] == 1 and c['img_per_s'] > 0 and 'training images/s' in stdout, c

def test_noise_pred_cpu_runs_and_resumes(tmp_path):
    args = ['--n-train', 256, '--epochs', 1, '--reg-epochs', 1, '--n', 16, '--steps', 3, '--run-dir', tmp_path/'run',
            '--out', tmp_path/'np.json']
    run('noise_pred_cpu.py', *args)
    d = json.loads((tmp_path/'np.json').read_text())
    check_machine(d)
    assert len(d['methods']) == 6, d['methods']
    assert all(math.isfinite(m['fid']) and m['n'] == 16 and m['feature_net'] for m in d['methods'].values())
    assert set(d['models']) == {'t', 'not'} and -1 <= d['regressor']['spearman'] <= 1
    saved = sorted(p.name for p in (tmp_path/'run').iterdir())   # the lock file is gone with the script
    assert saved == sorted(['unet_t.pt', 'unet_not.pt', 'regressor.pt', *(f'samples_{i}_16_3.pt' for i in range(6))])
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path/'run').iterdir()}
    run('noise_pred_cpu.py', *args)                      # everything is on disk: nothing is trained or sampled again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path/'run').iterdir()} == stamps, 'a saved stage was redone'
    d2 = json.loads((tmp_path/'np.json').read_text())
    assert {k: v['fid'] for k, v in d2['methods'].items()} == {k: v['fid'] for k, v in d['methods'].items()}
    assert d2['models'] == d['models']
    r = call('noise_pred_cpu.py', *args, '--epochs', '2')
    assert r.returncode != 0 and 'give another --run-dir' in r.stderr, r.stderr[-2000:]   # other settings: not reused
    with RunLock(tmp_path/'run'):                        # a second writer (here: this test) holds the folder
        r = call('noise_pred_cpu.py', *args)
    assert r.returncode == 1 and 'is in use by process' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path/'run').iterdir()} == stamps

def test_ddpm_full_smoke(tmp_path):
    out, run_dir = tmp_path/'dd.json', tmp_path/'dd'
    args = ['--recipe', '07', '--n-train', 256, '--n-valid', 128, '--epochs', 1, '--n-samples', 2, '--fid-n', 32,
            '--ddim-steps', 5, '--mse-draws', 2, '--run-dir', run_dir, '--out', out]
    run('ddpm_full.py', *args)
    d = json.loads(out.read_text())
    check_machine(d)
    assert d['recipe'] == '07' and len(d['valid_mse_per_epoch']) == 1 and 0 < d['valid_mse'] < 2, d['valid_mse']
    assert d['samples_finite'] and (run_dir/'checkpoint.pt').exists()
    dr = d['valid_mse_draws']
    assert len(dr['means']) == 2 and dr['means'][0] != dr['means'][1] and 0 < dr['se_within'] < dr['mean'] < 2, dr
    # (each draw has its own t and ε)
    [f] = d['fid']
    assert f['setting'] == dict(n=32, ddim_steps=5, eta=0.0, feature='shipped') and f['fid'] > f['real_fid'] > 0, f
    from miniai.fid import SHIPPED_HASH
    assert f['feature_net'] == SHIPPED_HASH, f
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir/'checkpoint.pt', out.with_suffix('.png'))}
    log = run('ddpm_full.py', *args)                     # all done: nothing is trained, sampled or scored again
    assert 'samples: kept' in log and 'MSE draws: kept' in log and 'FID: kept' in log, log
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, 'a finished stage was redone'
    assert json.loads(out.read_text())['fid'] == [f]
    run('ddpm_full.py', *args, '--eta', 1)              # another FID setting: added beside the first
    f2 = json.loads(out.read_text())['fid']
    assert len(f2) == 2 and f2[0] == f and f2[1]['setting']['eta'] == 1 and math.isfinite(f2[1]['fid']), f2
    r = call('ddpm_full.py', *args, '--scaling', '01')
    assert r.returncode != 0 and 'give another --run-dir' in r.stderr, r.stderr[-2000:]   # another run's checkpoint

def test_dropout_full_smoke(tmp_path):
    out = tmp_path/'do.json'
    run('dropout_full.py', '--n-train', 512, '--nfs', 4, 8, 16, 32, 64, 128, '--epochs', 1, '--n-pass', 2, '--bs', 256,
        '--run-dir', tmp_path/'do', '--out', out)
    d = json.loads(out.read_text())
    check_machine(d)
    assert 0.1 < d['accuracy_dropout'] <= 1 and 0.1 < d['accuracy_plain'] <= 1, d
    assert d['mc_passes'] == 2 and d['recipe']['nfs'] == [4, 8, 16, 32, 64, 128]
    assert all(0 <= v <= 1 for v in d['auroc'].values()), d['auroc']

def test_quality_curves(tmp_path):
    "train (snapshots), calibrate and eval of bench/quality_curves.py at toy size, in a scratch folder (runs/quality)."
    def qc(*args):
        r = subprocess.run([sys.executable, str(BENCH/'quality_curves.py'), *map(str, args)], capture_output=True,
                           text=True, timeout=900, env=ENV, cwd=tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        return r.stdout
    qc('train', '--name', 't', '--max-images', 1280, '--snap-every', 640, '--bs', 64)
    snaps = sorted(p.name for p in (tmp_path/'runs/quality/t').glob('snap_*.pt'))
    assert snaps == ['snap_00000640.pt', 'snap_00001280.pt'], snaps
    qc('calibrate', '--name', 't', '--threads', 1, '--warmup-batches', 2, '--seconds', 1, '--out', tmp_path/'c.json')
    c = json.loads((tmp_path/'c.json').read_text())
    assert c[0]['name'] == 't' and c[0]['img_per_s'] > 0
    out = qc('eval', '--name', 't', '--img-per-s', 640/60, '--minutes', 1, 5, '--n', 16, '--steps', 2, '--threads', 1)
    assert 'no snapshot within 5% of 5 minutes' in out, out      # 3,200 images were never reached: refused, not faked
    rows = json.loads((tmp_path/'runs/quality/t/curve.json').read_text())['rows']
    assert [(r['images'], r['weights'], r['nfe']) for r in rows] == [(640, 'raw', 2), (640, 'ema', 2)], rows
    assert all(math.isfinite(r['fid']) for r in rows)
    qc('eval', '--name', 't', '--img-per-s', 640/60, '--minutes', 1, '--n', 16, '--steps', 2, '--threads', 1,
       '--sigma-max', 20, '--weights', 'ema')                   # another noise range: one more row, EMA weights only
    rows = json.loads((tmp_path/'runs/quality/t/curve.json').read_text())['rows']
    assert [(r['weights'], r['sigma_max']) for r in rows] == [('raw', 80), ('ema', 80), ('ema', 20)], rows


def test_quality_curves_names(monkeypatch):
    "The plot's panels and colours come from a curve's schedule and its settings without it, fields of every row."
    import importlib.util
    monkeypatch.syspath_prepend(str(BENCH))   # the script imports bench/_common.py as its neighbour
    spec = importlib.util.spec_from_file_location('quality_curves', BENCH/'quality_curves.py')
    qc = importlib.util.module_from_spec(spec); spec.loader.exec_module(qc)
    for curve, sched, setting in (('micro, bs 128, inverse-sqrt lr', qc.INVSQRT, 'micro, bs 128'),
                                  ('micro, random flips, OneCycle over the budget', qc.ONECYCLE, 'micro, random flips'),
                                  ('tiny, inverse-sqrt lr (one run, snapshots)', qc.INVSQRT, 'tiny'),   # older rows
                                  ('micro, OneCycle over the budget (one run per point)', qc.ONECYCLE, 'micro')):
        assert (qc.schedule(curve), qc.setting(curve)) == (sched, setting), curve
    from miniai.settings import RunConfig   # a second seed of the same settings is a curve of its own
    for cfg, curve in ((RunConfig(preset='micro_attn', lr_sched='invsqrt', seed=0), 'micro_attn, inverse-sqrt lr'),
                       (RunConfig(preset='micro_attn', lr_sched='invsqrt', seed=42), 'micro_attn, seed 42, inverse-sqrt lr'),
                       (RunConfig(epochs=11, ema=True), 'micro, OneCycle over the budget'),
                       (RunConfig(bs=128, seed=1), 'micro, bs 128, seed 1, OneCycle over the budget')):
        assert qc.series_of(cfg) == curve, cfg
    assert qc.setting('micro_attn, seed 42, inverse-sqrt lr') == 'micro_attn, seed 42'
    from miniai.settings import recipe   # `train --preset micro_attn --seed 42` is the recipe two_hours, with snapshots
    a = qc.parser().parse_args(['train', '--name', 'x', '--preset', 'micro_attn', '--seed', '42'])
    assert qc.run_config(a) == recipe('two_hours', epochs=1000)
    q = json.loads((BENCH/'results'/'quality_curves.json').read_text())   # `report` writes both parts as fields
    assert q['schedules'] == qc.SCHEDULES == [qc.ONECYCLE, qc.INVSQRT]
    for r in q['rows']:
        assert r['schedule'] in q['schedules'] and r['series'] == f"{r['setting']}, {r['schedule']}", r['name']


def test_throughput_variants(tmp_path):
    "bench/throughput.py times each layout variant and thread count it is given, and names them in its rows."
    out = tmp_path/'tp.json'
    run('throughput.py', '--presets', 'micro', '--modes', 'fp32', '--variants', 'eager', 'channels_last',
        '--threads', 1, 2, '--bs', 8, '--seconds', 0.2, '--min-steps', 1, '--warmup', 1, '--out', out)
    rows = json.loads(out.read_text())['rows']
    assert [(r['variant'], r['threads']) for r in rows] == [('eager', 1), ('channels_last', 1), ('eager', 2),
                                                            ('channels_last', 2)], rows
    assert all(r['images_per_s'] > 0 and r['timed_images'] >= 8 for r in rows), rows
