"""How fast the `miniai` command answers `--help`: the CLI imports PyTorch and the other heavy libraries only inside
its commands, so help should cost little more than starting Python.

Times (wall clock, median of --runs runs each, run one after another) of: `python -c pass`, `miniai --version`,
`miniai --help` and `miniai train|sample|eval --help`; writes bench/results/cli_help.json.

  python bench/cli_help.py --runs 9
"""
import argparse, statistics, subprocess, sys, time
from pathlib import Path

from _common import write_json

BIN = Path(sys.executable).parent
CASES = {'python -c pass': [sys.executable, '-c', 'pass'], 'miniai --version': [str(BIN/'miniai'), '--version'],
         'miniai --help': [str(BIN/'miniai'), '--help'], 'miniai train --help': [str(BIN/'miniai'), 'train', '--help'],
         'miniai sample --help': [str(BIN/'miniai'), 'sample', '--help'],
         'miniai eval --help': [str(BIN/'miniai'), 'eval', '--help']}


def seconds(cmd) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0: sys.exit(f'{" ".join(cmd)} failed (exit {r.returncode}): {r.stderr[-500:]}')
    return dt


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--runs', type=int, default=9, help='runs of each command (default: %(default)s)')
    p.add_argument('--out', default='bench/results/cli_help.json', help='JSON to write (default: %(default)s)')
    a = p.parse_args()
    if a.runs < 1: sys.exit('--runs must be at least 1')
    if not (BIN/'miniai').exists(): sys.exit(f'{BIN/"miniai"} is missing: install miniai into this environment first')
    for cmd in CASES.values(): seconds(cmd)   # one warm-up run each: the file cache, not Python, is measured otherwise
    times = {k: [] for k in CASES}
    for _ in range(a.runs):                   # interleaved, so a burst of load elsewhere hits every command alike
        for k, cmd in CASES.items(): times[k].append(seconds(cmd))
    base = statistics.median(times['python -c pass'])
    res = {k: dict(median_s=round(statistics.median(v), 3), min_s=round(min(v), 3), max_s=round(max(v), 3),
                   over_python_s=round(statistics.median(v) - base, 3)) for k, v in times.items()}
    out = dict(runs=a.runs, results=res, slowest_help_s=max(res[k]['median_s'] for k in res if 'help' in k))
    write_json(a.out, out)
    for k, r in res.items(): print(f"{k:22s} median {r['median_s']:.3f} s (min {r['min_s']:.3f}, max {r['max_s']:.3f})")
    print(f'wrote {a.out}')


if __name__ == '__main__': main()
