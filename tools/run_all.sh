#!/usr/bin/env bash
# Run All of every numbered notebook (and index) at the default scale, one after another, as a learner would in
# Jupyter: MINIAI_SCALE unset, the miniai kernel, through nbconvert. Prints one line per notebook (minutes, exit
# status, load average at the end) and keeps the executed copies in OUT (default: a temporary folder).
#   tools/run_all.sh [OUT]        # the README's table: run on an idle machine
set -u
cd "$(dirname "$0")/.."
OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
unset MINIAI_SCALE
for f in nbs/[0-1][0-9]_*.ipynb nbs/index.ipynb; do
  n=$(basename "$f" .ipynb)
  s=$(date +%s.%N)
  .venv/bin/jupyter nbconvert --to notebook --execute --ExecutePreprocessor.kernel_name=miniai \
    --ExecutePreprocessor.timeout=1800 --output-dir "$OUT" --output "$n.ipynb" "$f" > "$OUT/$n.log" 2>&1
  rc=$?
  e=$(date +%s.%N)
  echo "$n rc=$rc $(python3 -c "print(round(($e-$s)/60, 2))") min load=$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/times.txt"
done
