"""Repository-wide checks: warnings a learner should not see, no citations of files outside the repository, notebooks
in dependency order, and the lint of the exported code (the same rules as `make lint`)."""
import ast, json, re, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT/'.venv'/'bin'
NBS = sorted((ROOT/'nbs').glob('*.ipynb'))
MODULES = sorted(p.stem for p in (ROOT/'miniai').glob('*.py') if p.stem != '_modidx')


def code_cells(nb_path):
    return [c for c in json.loads(nb_path.read_text(encoding='utf-8'))['cells'] if c['cell_type'] == 'code']


def src(cell): return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


# (a) ------------------------------------------------------------------------------------------------------------------
# Each module is imported in a fork of one process that imported torch first (under the same warning filter): a fresh
# import of every miniai module and its other dependencies, without paying torch's import time per module.
IMPORT_CHECK = r'''
import importlib, os, sys, traceback
import torch
bad = 0
for name in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try: importlib.import_module(name)
        except BaseException as e:
            where = traceback.extract_tb(e.__traceback__)[-1]
            print(f'{name}: {type(e).__name__}: {e} ({where.filename}:{where.lineno})', flush=True)
            os._exit(1)
        os._exit(0)
    bad += os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0
sys.exit(1 if bad else 0)
'''


def test_modules_import_without_future_warnings():
    names = ['miniai' if m == '__init__' else f'miniai.{m}' for m in MODULES]
    r = subprocess.run([sys.executable, '-W', 'error::FutureWarning', '-c', IMPORT_CHECK, *names], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f'imports that raise a FutureWarning (as errors):\n{r.stdout}{r.stderr[-2000:]}'


# (b) ------------------------------------------------------------------------------------------------------------------
UNWANTED_OUTPUT = ['torch.jit.script', 'IProgress not found']


def output_text(o):
    parts = [o.get('text', ''), *o.get('data', {}).values(), *o.get('traceback', [])]
    return ''.join(''.join(p) if isinstance(p, list) else p for p in parts if isinstance(p, (str, list)))


def test_saved_outputs_hold_no_unwanted_warnings():
    found = [f'{nb.name} cell {i}: {w!r}' for nb in NBS for i, c in enumerate(code_cells(nb))
             for o in c.get('outputs', []) for w in UNWANTED_OUTPUT if w in output_text(o)]
    assert not found, 'saved outputs with warnings a learner should not see:\n' + '\n'.join(found)


# (c) ------------------------------------------------------------------------------------------------------------------
# written in pieces so that this file does not cite them itself
OUTSIDE = ['REFERENCE' + '.md', '../' + 'shared', '/' + 'work/']


def repo_files():
    r = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard', '-z'], cwd=ROOT,
                       capture_output=True)
    if r.returncode != 0: pytest.skip('not a git checkout: the list of repository files comes from git')
    return [ROOT/f for f in r.stdout.decode().split('\0') if f and (ROOT/f).is_file()]


def test_no_file_cites_files_outside_the_repository():
    found = []
    for f in repo_files():
        data = f.read_bytes()
        if b'\0' in data: continue  # binary
        for n, line in enumerate(data.decode('utf-8', errors='replace').splitlines(), 1):
            found += [f'{f.relative_to(ROOT)}:{n}: {w!r}' for w in OUTSIDE if w in line]
    assert not found, f'{len(found)} citations of files outside the repository:\n' + '\n'.join(found)


# (d) ------------------------------------------------------------------------------------------------------------------
def miniai_imports(code):
    "Modules of miniai that `code` imports (`from miniai.X import`, `import miniai.X`, `from miniai import X`)."
    lines = [ln for ln in code.splitlines() if not ln.lstrip().startswith(('%', '!'))]
    try: trees = [ast.parse('\n'.join(lines))]
    except SyntaxError:  # a cell Python cannot parse as a whole: its import lines one by one
        trees = []
        for ln in lines:
            try: trees.append(ast.parse(ln.strip()))
            except SyntaxError: pass
    mods = set()
    for node in (n for t in trees for n in ast.walk(t)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            parts = node.module.split('.')
            if parts[0] != 'miniai': continue
            if len(parts) > 1: mods.add(parts[1])
            else: mods.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            mods.update(a.name.split('.')[1] for a in node.names if a.name.startswith('miniai.'))
    return mods


def test_notebooks_import_only_from_earlier_notebooks():
    exp_re = re.compile(r'^#\s*\|\s*default_exp\s+(\S+)', re.M)
    owner, numbered = {}, {}
    for nb in NBS:
        m = re.match(r'(\d+)_', nb.name)
        if m: numbered[nb] = int(m.group(1))
        for c in code_cells(nb):
            for mod in exp_re.findall(src(c)): owner[mod] = nb
    problems = []
    for nb, num in sorted(numbered.items(), key=lambda o: o[1]):
        used = set().union(*(miniai_imports(src(c)) for c in code_cells(nb)))
        for mod in sorted(used):
            if mod not in owner: problems.append(f'{nb.name} imports miniai.{mod}, which no notebook exports')
            elif owner[mod] != nb and (owner[mod] not in numbered or numbered[owner[mod]] >= num):
                problems.append(f'{nb.name} imports miniai.{mod}, exported by the later {owner[mod].name}')
    assert not problems, '\n'.join(problems)


def test_miniai_imports_parser():
    code = ('import torch\nfrom miniai.core import scale\nimport miniai.fid as f, os\nfrom miniai import learner\n'
            '%time x = 1\n!ls\n    from miniai.samplers import euler')
    assert miniai_imports(code) == {'core', 'fid', 'learner', 'samplers'}


# (e) ------------------------------------------------------------------------------------------------------------------
def test_lint_exported_code():
    "tools/lint.py (ruff, tools/ruff.toml): lines of at most 120 characters, no unused imports, as `make lint`."
    if not (BIN/'ruff').exists(): pytest.skip('no .venv/bin/ruff: run `make setup` first')
    r = subprocess.run([str(BIN/'python'), 'tools/lint.py'], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f'make lint fails:\n{r.stdout[-3000:]}{r.stderr}'
