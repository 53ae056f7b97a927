"""How long `load_fashion_mnist()` takes cold (IDX -> Arrow cache) and cached, and `fashion_mnist_tensors()`.
Usage: .venv/bin/python bench/data_load.py    (uses a fresh temporary MINIAI_CACHE for the cold run)"""
import json, os, platform, tempfile, time
os.environ['MINIAI_CACHE'] = tempfile.mkdtemp()
from miniai.datasets import load_fashion_mnist, fashion_mnist_tensors

def timed(f):
    t0 = time.perf_counter(); r = f(); return r, time.perf_counter() - t0

dsd, cold = timed(load_fashion_mnist)
dsd2, cached = timed(load_fashion_mnist)
assert len(dsd2['train']) == 60_000 and len(dsd2['test']) == 10_000
_, tens = timed(lambda: fashion_mnist_tensors(pad=True, scaling='-11'))
res = {'load_fashion_mnist_cold_s': round(cold, 2), 'load_fashion_mnist_cached_s': round(cached, 2),
       'fashion_mnist_tensors_s': round(tens, 2), 'machine': platform.machine(), 'cores': os.cpu_count()}
print(json.dumps(res, indent=1))
