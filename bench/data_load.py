"""How long loading Fashion-MNIST takes, side by side in one run:
- raw: reading the four IDX files into NumPy arrays (gzip + np.frombuffer, nothing else): the floor;
- cold: `load_fashion_mnist()` into an empty cache (a fresh MINIAI_CACHE folder each time): IDX -> Arrow -> DatasetDict;
- cached: `load_fashion_mnist()` again, from the Arrow cache;
- tensors: `fashion_mnist_tensors(pad=True, scaling='-11')`.
Each is timed `--repeats` times, alternating, and the median is reported with cold/raw, the ratio the goal is about
(at most 2). Writes bench/results/data_load.json.
Usage: .venv/bin/python bench/data_load.py [--repeats 5]"""
import argparse, gzip, os, shutil, statistics, sys, tempfile, time

import numpy as np

from miniai.datasets import FASHION_FILES, find_fashion_mnist, load_fashion_mnist, fashion_mnist_tensors
from _common import RESULTS, write_json

OUT = RESULTS/'data_load.json'

def raw_read(files: dict) -> dict:
    "The four IDX files as NumPy arrays, with no checks: gunzip, skip the header, np.frombuffer."
    out = {}
    for split, (ims, lbls, n) in FASHION_FILES.items():
        arrs = []
        for stem, shape in ((ims, (n, 28, 28)), (lbls, (n,))):
            f = files[stem]
            raw = gzip.open(f).read() if f.suffix == '.gz' else f.read_bytes()
            arrs.append(np.frombuffer(raw, np.uint8, offset=4 + 4*len(shape)).reshape(shape))
        out[split] = tuple(arrs)
    return out

def timed(f):
    t0 = time.perf_counter(); r = f(); return r, time.perf_counter() - t0

def main(repeats: int, out=OUT):
    files = find_fashion_mnist()
    if files is None: sys.exit('data_load: no local Fashion-MNIST IDX files (see miniai.datasets.HOW_TO_GET).')
    times = {'raw': [], 'cold': [], 'cached': [], 'tensors': []}
    for i in range(repeats):
        cache = os.environ['MINIAI_CACHE'] = tempfile.mkdtemp(prefix='miniai_data_load_')   # empty: a cold load
        try:
            arrs, t_raw = timed(lambda: raw_read(files))
            dsd, t_cold = timed(load_fashion_mnist)
            dsd2, t_cached = timed(load_fashion_mnist)
            _, t_tens = timed(lambda: fashion_mnist_tensors(pad=True, scaling='-11'))
            if i == 0:   # the same data, whichever way it was read
                assert len(dsd2['train']) == 60_000 and len(dsd2['test']) == 10_000
                assert np.array_equal(np.asarray(dsd['test'][123]['image']), arrs['test'][0][123])
            del dsd, dsd2
        finally: shutil.rmtree(cache)
        for k, t in zip(times, (t_raw, t_cold, t_cached, t_tens)): times[k].append(round(t, 3))
        print(f'run {i + 1}/{repeats}: raw {t_raw:.2f}s, cold {t_cold:.2f}s, cached {t_cached:.3f}s, '
              f'tensors {t_tens:.2f}s', flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    res = {'command': 'python bench/data_load.py' + (f' --repeats {repeats}' if repeats != 5 else ''),
           'median_s': med, 'all_s': times, 'cold_over_raw': round(med['cold']/med['raw'], 2)}
    print(f"median: raw {med['raw']:.2f}s, cold {med['cold']:.2f}s, cached {med['cached']:.3f}s, tensors "
          f"{med['tensors']:.2f}s; cold / raw = {res['cold_over_raw']}x (goal: at most 2x)")
    write_json(out, res)
    print(f'wrote {out}')

if __name__ == '__main__':
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--out', default=str(OUT), help='JSON to write (default: %(default)s)')
    a = p.parse_args()
    main(a.repeats, a.out)
