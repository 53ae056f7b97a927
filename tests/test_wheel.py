"""miniai installs into a user's own environment: a wheel built from the repository goes into a fresh venv that already
has another torch 2.x, keeps that torch, and imports; the declared dependencies are compatible ranges, all used."""
import ast, configparser, os, re, shlex, shutil, subprocess, sys, time, zipfile
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, '-m', 'pip']
OTHER_TORCH = '2.13.0'  # not the 2.14.1 of requirements.txt; a CPU build of it lies on the CI machine's disk
# what a build of the distribution reads from the repository (setup.py's inputs)
BUILD_INPUTS = ['setup.py', 'settings.ini', 'README.md', 'LICENSE', 'miniai']


def settings():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return cfg['DEFAULT']


def declared(): return [Requirement(r) for r in shlex.split(settings()['requirements'])]


def norm(name): return re.sub(r'[-_.]+', '-', name).lower()


def pins():
    "The exact pins of requirements.txt, {normalised name: (name, version)}."
    out = {}
    for ln in (ROOT/'requirements.txt').read_text().splitlines():
        ln = ln.split('#')[0].strip()
        if ln:
            name, ver = ln.split('==')
            out[norm(name)] = (name.strip(), ver.strip())
    return out


def test_declared_dependencies_are_ranges_that_hold_the_pins():
    p = pins()
    for r in declared():
        ops = {s.operator for s in r.specifier}
        assert '==' not in ops and '===' not in ops, f'{r}: install_requires states ranges; pins go to requirements.txt'
        assert ops & {'>=', '>', '~='}, f'{r}: give a lower bound'
        assert norm(r.name) in p, f'{r.name} is declared but not pinned in requirements.txt'
        assert r.specifier.contains(p[norm(r.name)][1]), f'pin {p[norm(r.name)]} is outside the declared range {r}'


def imported_top_modules():
    "Top-level modules imported anywhere in the package (any depth: imports inside functions count)."
    mods = set()
    for f in (ROOT/'miniai').glob('*.py'):
        for node in ast.walk(ast.parse(f.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Import): mods.update(a.name.split('.')[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods.add(node.module.split('.')[0])
    return mods - set(sys.stdlib_module_names) - {'miniai', '__future__'}


def test_every_declared_dependency_is_used_and_every_import_declared():
    dists = packages_distributions()  # top-level module -> distributions, from this environment
    used = {norm(d) for m in imported_top_modules() for d in dists.get(m, [m])}
    names = {norm(r.name) for r in declared()}
    assert not names - used, f'declared but imported nowhere in miniai/: {sorted(names - used)}'
    assert not used - names, f'imported by miniai/ but not in settings.ini requirements: {sorted(used - names)}'


def run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def local_find_links():
    "The local folders pip is configured to look in (find-links in pip's config files or PIP_FIND_LINKS)."
    out = subprocess.run([*PIP, 'config', 'list'], capture_output=True, text=True).stdout
    vals = re.findall(r"find-links='([^']*)'", out) + [os.environ.get('PIP_FIND_LINKS', '')]
    dirs = [Path(v.removeprefix('file://')) for val in vals for v in val.split()]
    return [d for d in dirs if d.is_dir()]


def other_torch_wheel():
    tag = f'cp{sys.version_info.major}{sys.version_info.minor}'
    for d in local_find_links():
        for f in sorted(d.glob(f'torch-{OTHER_TORCH}*-{tag}-*.whl')): return f
    return None


def test_wheel_installs_beside_another_torch(tmp_path):
    torch_whl = other_torch_wheel()
    if torch_whl is None:
        pytest.skip(f'no local torch=={OTHER_TORCH} wheel in pip\'s find-links folders ({local_find_links()}); '
                    'this test installs torch only from a file on disk and never downloads one')
    t0 = time.monotonic()
    src = tmp_path/'src'
    src.mkdir()
    for name in BUILD_INPUTS:
        (shutil.copytree if (ROOT/name).is_dir() else shutil.copy)(ROOT/name, src/name)
    for d in src.rglob('__pycache__'): shutil.rmtree(d)
    run([*PIP, 'wheel', '-q', '--no-deps', '-w', tmp_path/'dist', src], timeout=600)
    (whl,) = (tmp_path/'dist').glob('*.whl')
    dist_name = settings()['lib_name']
    assert whl.name.startswith(norm(dist_name).replace('-', '_') + '-'), whl.name
    # every file of the package is in the wheel (modules and data such as the shipped weights)
    missing = {f.relative_to(src).as_posix() for f in (src/'miniai').rglob('*') if f.is_file()}
    missing -= set(zipfile.ZipFile(whl).namelist())
    assert not missing, f'missing from the wheel: {sorted(missing)}'

    venv = tmp_path/'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', venv], timeout=300)
    vpy = venv/'bin'/'python'
    vpip = [*PIP, '--python', vpy]
    run([*vpip, 'install', '-q', torch_whl], timeout=900)  # the user's torch (its small dependencies from the registry)
    # the pinned versions (but not torch) as constraints: the same files as .venv, from pip's cache
    cons = tmp_path/'constraints.txt'
    cons.write_text(''.join(f'{n}=={v}\n' for k, (n, v) in pins().items() if k != 'torch'))
    run([*vpip, 'install', '-q', '-c', cons, whl], timeout=900)
    listed = run([*vpip, 'list', '--format=freeze'], timeout=120)
    assert re.search(rf'^torch=={re.escape(OTHER_TORCH)}', listed, re.M), listed
    assert 'nvidia-' not in listed, 'a CUDA build of torch was pulled in:\n' + listed
    run([*vpip, 'check'], timeout=120)

    script = ('import torch, miniai, miniai.core, miniai.learner, miniai.fid\n'
              'from miniai.core import scale\n'
              'from miniai.learner import Learner\n'
              f'assert torch.__version__.startswith("{OTHER_TORCH}"), torch.__version__\n'
              'assert "site-packages" in miniai.__file__, miniai.__file__\n'
              'print(torch.__version__, miniai.__version__, scale(), Learner.__name__)')
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    out = run([vpy, '-c', script], cwd=tmp_path, env=env, timeout=300)
    assert out.split()[0].startswith(OTHER_TORCH) and out.split()[3] == 'Learner', out
    assert 'miniai' in run([venv/'bin'/'miniai', '--help'], cwd=tmp_path, env=env, timeout=300)
    print(f'wheel -> fresh venv with torch {OTHER_TORCH} -> import: {time.monotonic() - t0:.0f} s')
