"""`make gpu-check` (bench/gpu_check.py) as a dry run: without a GPU the same checks run on the CPU at toy size, pass,
and say plainly that their figures are CPU figures."""
import json, os, subprocess, sys
from pathlib import Path

BENCH = Path(__file__).parents[1]/'bench'
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}   # toy sizes: one thread is fastest, and kind to a shared machine

def test_gpu_check_dry_run(tmp_path):
    out = tmp_path/'gc.json'
    r = subprocess.run([sys.executable, str(BENCH/'gpu_check.py'), '--dry-run', '--notebooks', '--out', str(out)],
                       capture_output=True, text=True, timeout=600, env=ENV)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert 'DRY RUN' in r.stdout and 'CPU figure, not a GPU one' in r.stdout, r.stdout
    d = json.loads(out.read_text())
    assert d['dry_run'] and d['ok'] and 'not a GPU one' in d['note'] and d['machine']['device'] == 'cpu', d['note']
    assert d['machine']['gpu'] is None and 'not run' in d['notebooks']     # a dry run does not run the notebooks
    c = d['checks']
    assert set(c) == {'fit_fp32', 'fit_fp16', 'fit_bf16', 'fit_accelerate', 'sampling', 'speed', 'checkpoint'}, set(c)
    assert all(v['ok'] for v in c.values()), {k: v.get('error') for k, v in c.items()}
    for m in ('fp32', 'fp16', 'bf16', 'accelerate'):
        f = c[f'fit_{m}']
        assert f['finite'] and f['falling'] and f['last_loss'] < f['first_loss'] and f['weights_changed'], (m, f)
        assert f['skipped_steps'] < f['steps']//2, (m, f)
    assert c['fit_fp16']['loss_scaler'] and c['fit_fp16']['autocast'] == 'float16'   # the CUDA recipe's path, on CPU
    assert c['fit_fp16']['required'] is False    # bf16 is this machine's default: fp16 is reported, not required
    assert c['fit_fp32']['autocast'] == 'float32' and not c['fit_fp32']['loss_scaler']
    for smp in ('dpmpp_2m', 'ddim'): assert c['sampling'][smp]['finite'] and c['sampling'][smp]['std'] > 0
    k = c['checkpoint']
    assert k['checkpoint_equals_model'] and k['resumed_weights_equal'] and k['resumed_at_epoch'] == 1, k
    assert k['safetensors_round_trip'] and k['run_sampled_on_cpu'], k
    s = c['speed']
    assert {(t['preset'], t['mode']) for t in s['train']} == {(p, m) for p in ('micro', 'tiny') for m in ('fp32', 'mp')}
    assert all(t['images_per_s'] > 0 for t in s['train']) and set(s['mp_over_fp32']) == {'micro', 'tiny'}
    assert s['sampling']['images_per_s'] > 0

def test_gpu_check_failure_is_reported(tmp_path):
    "A check that fails makes the command exit 1 and is marked in the JSON (here the loss is made to 'not fall')."
    out = tmp_path/'gc.json'
    code = ("import sys; out, bench = sys.argv[1:]; sys.argv = ['gpu_check.py', '--dry-run', '--out', out]; "
            "sys.path.insert(0, bench); import gpu_check as g; g.falling = lambda losses: False; g.main()")
    r = subprocess.run([sys.executable, '-c', code, str(out), str(BENCH)], capture_output=True, text=True, timeout=600,
                       env=ENV, cwd=BENCH.parent)
    assert r.returncode == 1 and 'SOME CHECKS FAILED' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert not d['ok'] and not d['checks']['fit_fp32']['ok'] and d['checks']['checkpoint']['ok']

def test_gpu_check_fp16_overflow_traced_and_reported(tmp_path):
    """Where fp16 is not the default 16-bit type (bf16 is: here, and on GPUs from Ampere on), an fp16 fit that overflows
    is reported, traced to the step and module where the overflow began, and does not fail the command."""
    out = tmp_path/'gc.json'
    code = ("import sys; out, bench = sys.argv[1:]\n"
            "sys.argv = ['gpu_check.py', '--dry-run', '--fp16-variants', '--out', out]\n"
            "sys.path.insert(0, bench); import torch, gpu_check as g\n"
            "class Blow(torch.nn.Module):\n"
            "    'Overflows fp16 activations only, as a too-large activation would.'\n"
            "    def forward(self, x): return x*1e6 if x.dtype == torch.float16 else x\n"
            "mk = g.make_net\n"
            "def make_net(sz):\n"
            "    net = mk(sz); net.conv_in = torch.nn.Sequential(net.conv_in, Blow()); return net\n"
            "g.make_net = make_net; g.main()")
    r = subprocess.run([sys.executable, '-c', code, str(out), str(BENCH)], capture_output=True, text=True, timeout=600,
                       env=ENV, cwd=BENCH.parent)
    assert r.returncode == 0 and 'FAIL (reported, not required)' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    d = json.loads(out.read_text())
    f = d['checks']['fit_fp16']
    assert d['ok'] and not f['ok'] and f['required'] is False and not f['finite'], f
    assert f['first_nonfinite_step'] == 0 and f['weights_finite'], f
    assert f['first_nonfinite_module']['module'] == 'conv_in.1' and f['first_nonfinite_module']['dtype'] == 'float16', f
    assert d['checks']['fit_bf16']['ok'] and d['checks']['fit_fp32']['ok']
    v = d['checks']['fp16_variants']     # the other U-Nets (a toy one in a dry run): reported, never required
    assert v['required'] is False and v['variants']['toy']['first_nonfinite_module']['module'] == 'conv_in.1', v
