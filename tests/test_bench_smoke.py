"""The long-running bench scripts at toy sizes: each must run end to end, write sane JSON, and (where it saves stages)
continue from what an earlier call left instead of starting again. The figures themselves come from full runs, not from here."""
import json, math, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).parents[1]/'bench'

def run(script, *args, timeout=900):
    r = subprocess.run([sys.executable, str(BENCH/script), *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f'{script} failed:\n{r.stderr[-3000:]}'
    return r.stdout

def test_quality_per_minute(tmp_path):
    out = tmp_path/'q.json'
    run('quality_per_minute.py', '--recipes', 'miniai', '--minutes', 0.05, '--n', 8, '--out', out)
    d = json.loads(out.read_text())
    assert d['complete'] and d['n'] == 8 and len(d['rows']) == 1
    row = d['rows'][0]
    assert row['train_steps'] >= 1 and 2.5 <= row['train_seconds'] < 30, row   # stops once the 3 s budget is spent
    assert math.isfinite(row['fid']) and row['nfe'] == 20 and row['feature_net'], row
    assert out.with_suffix('.png').stat().st_size > 1000

def test_noise_pred_cpu_runs_and_resumes(tmp_path):
    args = ['--n-train', 256, '--epochs', 1, '--reg-epochs', 1, '--n', 16, '--steps', 3, '--run-dir', tmp_path/'run', '--out', tmp_path/'np.json']
    run('noise_pred_cpu.py', *args)
    d = json.loads((tmp_path/'np.json').read_text())
    assert len(d['methods']) == 6 and all(math.isfinite(m['fid']) and m['n'] == 16 for m in d['methods'].values()), d['methods']
    assert set(d['models']) == {'t', 'not'} and -1 <= d['regressor']['spearman'] <= 1
    saved = sorted(p.name for p in (tmp_path/'run').iterdir())
    assert saved == sorted(['unet_t.pt', 'unet_not.pt', 'regressor.pt'] + [f'samples_{i}_16_3.pt' for i in range(6)]), saved
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path/'run').iterdir()}
    run('noise_pred_cpu.py', *args)                      # everything is on disk: nothing is trained or sampled again
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path/'run').iterdir()} == stamps, 'a saved stage was redone'
    d2 = json.loads((tmp_path/'np.json').read_text())
    assert {k: v['fid'] for k, v in d2['methods'].items()} == {k: v['fid'] for k, v in d['methods'].items()}
    assert d2['models'] == d['models']
    r = subprocess.run([sys.executable, str(BENCH/'noise_pred_cpu.py'), *map(str, args), '--epochs', '2'], capture_output=True, text=True)
    assert r.returncode != 0 and 'give another --run-dir' in r.stderr, r.stderr[-2000:]   # other settings never reuse saved stages

def test_ddpm_full_smoke(tmp_path):
    out, run_dir = tmp_path/'dd.json', tmp_path/'dd'
    args = ['--recipe', '07', '--n-train', 256, '--n-valid', 128, '--epochs', 1, '--n-samples', 2, '--fid-n', 32, '--ddim-steps', 5,
            '--feature', 'ci', '--mse-draws', 2, '--run-dir', run_dir, '--out', out]
    run('ddpm_full.py', *args)
    d = json.loads(out.read_text())
    assert d['recipe'] == '07' and len(d['valid_mse_per_epoch']) == 1 and 0 < d['valid_mse'] < 2, d['valid_mse_per_epoch']
    assert d['samples_finite'] and (run_dir/'checkpoint.pt').exists()
    dr = d['valid_mse_draws']
    assert len(dr['means']) == 2 and dr['means'][0] != dr['means'][1] and 0 < dr['se_within'] < dr['mean'] < 2, dr   # each draw its own t and ε
    [f] = d['fid']
    assert f['setting'] == dict(n=32, ddim_steps=5, eta=0.0, feature='ci') and f['fid'] > f['real_fid'] > 0, f
    stamps = {p: p.stat().st_mtime_ns for p in (run_dir/'checkpoint.pt', out.with_suffix('.png'))}
    log = run('ddpm_full.py', *args)                     # all done: nothing is trained, sampled or scored again
    assert 'samples: kept' in log and 'MSE draws: kept' in log and 'FID: kept' in log, log
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, 'a finished stage was redone'
    assert json.loads(out.read_text())['fid'] == [f]
    run('ddpm_full.py', *args, '--eta', 1)              # another FID setting: added beside the first
    f2 = json.loads(out.read_text())['fid']
    assert len(f2) == 2 and f2[0] == f and f2[1]['setting']['eta'] == 1 and math.isfinite(f2[1]['fid']), f2
    r = subprocess.run([sys.executable, str(BENCH/'ddpm_full.py'), *map(str, args), '--scaling', '01'], capture_output=True, text=True)
    assert r.returncode != 0 and 'give another --run-dir' in r.stderr, r.stderr[-2000:]   # another run's checkpoint is never resumed

def test_dropout_full_smoke(tmp_path):
    out = tmp_path/'do.json'
    run('dropout_full.py', '--n-train', 512, '--nfs', 4, 8, 16, 32, 64, 128, '--epochs', 1, '--n-pass', 2, '--bs', 256,
        '--run-dir', tmp_path/'do', '--out', out)
    d = json.loads(out.read_text())
    assert 0.1 < d['accuracy_dropout'] <= 1 and 0.1 < d['accuracy_plain'] <= 1, d
    assert d['mc_passes'] == 2 and d['recipe']['nfs'] == [4, 8, 16, 32, 64, 128]
    assert all(0 <= v <= 1 for v in d['auroc'].values()), d['auroc']
