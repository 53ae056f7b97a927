"""`make lint`: ruff (tools/ruff.toml: lines of at most 120 characters, no unused imports) over miniai/ and bench/.

One exception, made here because ruff cannot select lines by content: the first line of the `__all__` that
nbdev_export writes. nbdev 2 wraps that list at 120 characters *after* its `__all__ = ` prefix, so the line can reach
130; it is generated, and rewriting it would put the package out of sync with the notebooks.
Exit status 0 when clean; otherwise every finding, one per line, and status 1.
"""
import re, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).parent/'ruff'

def findings(paths=('miniai', 'bench')) -> list[str]:
    "ruff's findings over `paths`, less E501 on nbdev's generated `__all__ = [` line."
    r = subprocess.run([str(RUFF), 'check', '--config', 'tools/ruff.toml', '--output-format', 'concise', *paths],
                       cwd=ROOT, capture_output=True, text=True)
    if r.returncode not in (0, 1): raise SystemExit(f'ruff failed to run:\n{r.stderr}')
    out = []
    for ln in r.stdout.splitlines():
        m = re.match(r'(\S+\.py):(\d+):\d+: (\w+)', ln)
        if not m: continue
        if m.group(3) == 'E501':
            text = (ROOT/m.group(1)).read_text().splitlines()[int(m.group(2)) - 1]
            if text.startswith('__all__ = [') and len(text) <= 130: continue
        out.append(ln)
    return out

if __name__ == '__main__':
    bad = findings(sys.argv[1:] or ('miniai', 'bench'))
    print('\n'.join(bad) or 'lint: clean (miniai/, bench/)')
    sys.exit(1 if bad else 0)
