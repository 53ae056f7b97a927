"""`make lab` (the README's way into the lessons) starts JupyterLab with the miniai kernel: checked headless.

The server is started by the make target itself, on a free local port with a token, with Jupyter's user
folders pointed into a temporary directory so that only the kernel registered by `make setup` in .venv counts.
"""
import json, os, signal, socket, subprocess, time, urllib.error, urllib.request
from pathlib import Path

import nbformat, pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
VENV_PY = ROOT/'.venv'/'bin'/'python'
KERNEL, DISPLAY = 'miniai', 'miniai (.venv)'
pytestmark = pytest.mark.skipif(not VENV_PY.exists(), reason='no .venv: run `make setup` first')


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def jupyter_env(tmp):
    "os.environ with Jupyter's user config/data/runtime folders in `tmp`: the user's kernels/settings don't count."
    env = dict(os.environ)
    for k in 'CONFIG DATA RUNTIME'.split(): env[f'JUPYTER_{k}_DIR'] = str(tmp/k.lower())
    env.update(JUPYTERLAB_SETTINGS_DIR=str(tmp/'lab-settings'), JUPYTERLAB_WORKSPACES_DIR=str(tmp/'lab-workspaces'),
               IPYTHONDIR=str(tmp/'ipython'))
    env.pop('JUPYTER_PATH', None)
    return env


def get(url, token, method='GET', timeout=10):
    req = urllib.request.Request(url, method=method, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        body = r.read()
        return r.status, (json.loads(body) if body else None)


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "`make lab` running headless; yields (base url, token); always stopped (the whole process group) afterwards."
    tmp = tmp_path_factory.mktemp('lab')
    port, token = free_port(), 'miniai-test-token'
    args = f'--no-browser --ip=127.0.0.1 --port={port} --ServerApp.port_retries=0 --IdentityProvider.token={token}'
    log = open(tmp/'lab.log', 'w+')
    proc = subprocess.Popen(['make', '--no-print-directory', 'lab', f'LAB_ARGS={args}'], cwd=ROOT, env=jupyter_env(tmp),
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f'`make lab` exited with {proc.returncode} before answering:\n{log.read()[-3000:]}')
            try:
                if get(f'{url}/api/status', token, timeout=5)[0] == 200: break
            except (urllib.error.URLError, ConnectionError, TimeoutError): pass
            if time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f'JupyterLab did not answer on {url} within 180 s:\n{log.read()[-3000:]}')
            time.sleep(1)
        yield url, token
    finally:
        try: os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError: pass
        try: proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def test_lab_serves_the_lessons_with_the_miniai_kernel(lab):
    url, token = lab
    status, body = get(f'{url}/api/status', token)
    assert status == 200 and 'started' in body, body
    with pytest.raises(urllib.error.HTTPError):  # the token is really required
        urllib.request.urlopen(f'{url}/api/kernelspecs', timeout=10)
    _, specs = get(f'{url}/api/kernelspecs', token)
    assert KERNEL in specs['kernelspecs'], f"kernel {KERNEL!r} not listed: {sorted(specs['kernelspecs'])}"
    assert specs['default'] == KERNEL, specs['default']
    spec = specs['kernelspecs'][KERNEL]['spec']
    assert spec['display_name'] == DISPLAY
    assert Path(spec['argv'][0]).resolve() == VENV_PY.resolve(), spec['argv']
    _, contents = get(f'{url}/api/contents', token)  # the lab opens on nbs/
    names = {o['name'] for o in contents['content']}
    assert {'00_core.ipynb', 'index.ipynb'} <= names, sorted(names)


def test_lab_starts_a_miniai_kernel(lab):
    url, token = lab
    req = urllib.request.Request(f'{url}/api/kernels', data=json.dumps({'name': KERNEL}).encode(), method='POST',
                                 headers={'Authorization': f'token {token}', 'Content-Type': 'application/json'})
    with urllib.request.urlopen(req, timeout=120) as r: k = json.loads(r.read())
    try:
        assert k['name'] == KERNEL
        _, running = get(f'{url}/api/kernels', token)
        assert k['id'] in {o['id'] for o in running}
    finally: get(f"{url}/api/kernels/{k['id']}", token, method='DELETE', timeout=60)


def test_notebook_runs_on_the_miniai_kernel(tmp_path, monkeypatch):
    "A notebook run through the registered kernel (as the lab runs it, in nbs/) imports miniai from this repository."
    code = ('import sys, miniai\nfrom miniai.core import scale\n'
            'print(scale()); print(sys.prefix); print(miniai.__file__)')
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    for k, v in jupyter_env(tmp_path).items(): monkeypatch.setenv(k, v)
    NotebookClient(nb, kernel_name=KERNEL, timeout=300, resources={'metadata': {'path': str(ROOT/'nbs')}}).execute()
    out = ''.join(o.get('text', '') for o in nb.cells[0].outputs)
    scale_, prefix, file = out.split()
    assert scale_ == os.environ.get('MINIAI_SCALE', scale_)
    assert Path(prefix).resolve() == (ROOT/'.venv').resolve()
    assert Path(file).resolve() == (ROOT/'miniai'/'__init__.py').resolve()


def test_notebooks_name_the_miniai_kernel():
    "Every lesson opens with the miniai kernel (nbdev_clean keeps kernelspec, with display_name set to its name)."
    wrong = {}
    for f in sorted((ROOT/'nbs').glob('*.ipynb')):
        ks = json.loads(f.read_text(encoding='utf-8')).get('metadata', {}).get('kernelspec', {})
        if ks.get('name') != KERNEL: wrong[f.name] = ks.get('name')
    assert not wrong, f'notebooks whose kernelspec is not {KERNEL!r}: {wrong}'
