"""`make test` fails on a notebook that is not as nbdev_clean leaves it (tools/check_clean_nbs.py, make check-clean)."""
import json, shutil, subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = ROOT/'.venv'/'bin'
CHECK = ROOT/'tools'/'check_clean_nbs.py'
pytestmark = pytest.mark.skipif(not (BIN/'python').exists(), reason='no .venv: run `make setup` first')


def check(cwd):
    return subprocess.run([str(BIN/'python'), str(CHECK)], cwd=cwd, capture_output=True, text=True, timeout=120)


def project(tmp_path):
    "A small nbdev project (this repository's settings.ini) holding two notebooks, both cleaned by nbdev_clean."
    shutil.copy(ROOT/'settings.ini', tmp_path)
    (tmp_path/'nbs'/'sub').mkdir(parents=True)
    cells = [{'cell_type': 'markdown', 'id': 'a1', 'metadata': {}, 'source': ['# demo\n', '> a notebook']},
             {'cell_type': 'code', 'execution_count': None, 'id': 'b2', 'metadata': {}, 'outputs': [],
              'source': ['1 + 1']}]
    kernel = {'display_name': 'miniai', 'language': 'python', 'name': 'miniai'}
    nb = {'cells': cells, 'metadata': {'kernelspec': kernel}, 'nbformat': 4, 'nbformat_minor': 5}
    for f in ('nbs/00_a.ipynb', 'nbs/sub/01_b.ipynb'): (tmp_path/f).write_text(json.dumps(nb), encoding='utf-8')
    subprocess.run([str(BIN/'nbdev_clean')], cwd=tmp_path, check=True, capture_output=True, timeout=120)
    return tmp_path


def test_clean_notebooks_pass(tmp_path):
    r = check(project(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert '2 notebooks are clean' in r.stdout


@pytest.mark.parametrize('dirt', ['execution_count', 'cell_metadata', 'nb_metadata', 'key_order', 'display_name'])
def test_dirty_notebook_fails_naming_it_and_the_fix(tmp_path, dirt):
    root = project(tmp_path)
    f = root/'nbs'/'sub'/'01_b.ipynb'
    text = f.read_text(encoding='utf-8')
    nb = json.loads(text)
    code = nb['cells'][1]
    if dirt == 'execution_count':  # run in Jupyter, saved without the save hook
        code['execution_count'] = 3
        code['outputs'] = [{'output_type': 'execute_result', 'execution_count': 3, 'metadata': {},
                            'data': {'text/plain': ['2']}}]
    elif dirt == 'cell_metadata': code['metadata'] = {'collapsed': True, 'scrolled': True}
    elif dirt == 'nb_metadata': nb['metadata']['language_info'] = {'name': 'python', 'version': '3.11.2'}
    elif dirt == 'display_name': nb['metadata']['kernelspec']['display_name'] = 'miniai (.venv)'
    if dirt == 'key_order': f.write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding='utf-8')
    else: f.write_text(json.dumps(nb, sort_keys=True, indent=1, ensure_ascii=False) + '\n', encoding='utf-8')
    assert f.read_text(encoding='utf-8') != text
    r = check(root)
    assert r.returncode == 1, r.stdout + r.stderr
    assert 'nbs/sub/01_b.ipynb' in r.stderr and 'nbs/00_a.ipynb' not in r.stderr, r.stderr
    assert '1 of 2 notebooks are not clean' in r.stderr and 'make clean-nbs' in r.stderr, r.stderr
    # what the message says to run (make clean-nbs = nbdev_clean) makes the check pass again
    subprocess.run([str(BIN/'nbdev_clean')], cwd=root, check=True, capture_output=True, timeout=120)
    assert check(root).returncode == 0


def test_broken_notebook_fails(tmp_path):
    root = project(tmp_path)
    (root/'nbs'/'00_a.ipynb').write_text('{"cells": [', encoding='utf-8')
    r = check(root)
    assert r.returncode == 1 and 'nbs/00_a.ipynb (not a readable notebook' in r.stderr, r.stderr


def test_make_test_runs_the_checks_in_order():
    "make test: setup, export-sync check, clean-notebook check, lint, the notebooks at CI scale, then pytest."
    out = subprocess.run(['make', '-n', '--no-print-directory', 'test'], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    steps = ['nbdev_export', 'git status --porcelain -- miniai', 'tools/check_clean_nbs.py',
             'tools/lint.py', 'MINIAI_SCALE=ci .venv/bin/nbdev_test',
             'MINIAI_SCALE=ci .venv/bin/python -m pytest']
    pos = [out.find(s) for s in steps]
    assert all(p >= 0 for p in pos) and pos == sorted(pos), out

