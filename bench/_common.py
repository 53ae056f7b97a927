"""The harness every bench script shares (run as `python bench/NAME.py`, so this folder is on sys.path): the machine
description, atomic JSON results, one writer per run folder, resumable stages, and the timing callbacks."""
import os, platform, sys, time
from contextlib import contextmanager
from pathlib import Path

import torch

from miniai.core import def_device
from miniai.learner import Callback, CancelFitException
from miniai.checkpoint import RunLock, RunLockedError, atomic_save, atomic_write_json, safe_load

RESULTS = Path(__file__).parent/'results'
FEATURES = ('shipped', 'ci', 'full')   # --feature: the network shipped with miniai, or one built by an 08_fid recipe


def machine(device=None) -> dict:
    "Where and how a result was measured: device (GPU name), CPU, threads, load, versions and the command."
    dev = torch.device(device or def_device)
    try: cpu = next(ln.split(':', 1)[1].strip() for ln in open('/proc/cpuinfo') if ln.startswith('model name'))
    except (OSError, StopIteration): cpu = platform.processor() or platform.machine()
    return dict(device=str(dev), gpu=torch.cuda.get_device_name(dev) if dev.type == 'cuda' else None,
                cuda=torch.version.cuda if dev.type == 'cuda' else None, cpu=cpu, cores=os.cpu_count(),
                cpu_threads=torch.get_num_threads(), load_avg_1min=round(os.getloadavg()[0], 2),
                platform=platform.platform(), python=platform.python_version(), torch=torch.__version__,
                command=' '.join(['python', *sys.argv]))


def write_json(path, res: dict) -> Path:
    "Write the result `res` to `path` atomically (a killed run never leaves half a file), with `machine()` if absent."
    path = Path(path)
    atomic_write_json(path, res if 'machine' in res else {**res, 'machine': machine()})
    return path


@contextmanager
def run_folder(folder):
    "Create the run folder `folder` and hold its `RunLock` (one writer at a time); in use: exit with one line."
    try:
        with RunLock(folder) as lock: yield lock
    except RunLockedError as e: sys.exit(f'{Path(sys.argv[0]).name}: {e}')


def stage(path, make, cfg: dict) -> dict:
    "The saved result of a finished stage at `path` if made with the settings `cfg`; else run `make()`, save its dict."
    path = Path(path)
    if path.exists():
        d = safe_load(path, fix='delete the file to redo that stage')
        if d.get('cfg') != cfg:
            sys.exit(f"{path} was made with {d.get('cfg')}, this call asks for {cfg}: give another --run-dir, or "
                     "delete the file to redo that stage.")
        return d
    d = dict(make(), cfg=cfg)
    atomic_save(d, path)
    return d


def image_eval(feature: str = 'shipped'):
    "An `ImageEval` with the feature network shipped with miniai, or one built from the 08_fid recipe `feature`."
    from miniai.fid import ImageEval, feature_net
    if feature not in FEATURES: raise ValueError(f'feature={feature!r}: choose one of {FEATURES}.')
    return ImageEval(feature_net() if feature == 'shipped' else feature_net(feature))


def sync(device):
    "Wait for the device's queued work (CUDA), so that wall-clock times measure it."
    if torch.device(device).type == 'cuda': torch.cuda.synchronize()


class WallTimeCB(Callback):
    "Training + validation seconds summed over epochs; in the checkpoint (a state dict): a resumed run keeps counting."
    order = 0
    def __init__(self): self.seconds, self.t0 = 0., None
    def state_dict(self):   # mid-epoch: the epoch so far too
        return {'seconds': self.seconds + (0. if self.t0 is None else time.time() - self.t0)}
    def load_state_dict(self, sd): self.seconds = sd['seconds']
    def before_epoch(self, learn): self.t0 = time.time()
    def after_epoch(self, learn): self.seconds, self.t0 = self.seconds + time.time() - self.t0, None


class TimeBudgetCB(Callback):
    "Count and time the training batches after `warmup`; stop the fit once `seconds` passed and `min_steps` were timed."
    order = 100
    def __init__(self, seconds: float, warmup: int = 0, min_steps: int = 1, device=None):
        self.seconds, self.warmup, self.min_steps, self.device = seconds, warmup, min_steps, device or def_device
    def before_fit(self, learn):
        self.steps, self.imgs, self.secs = 0, 0, 0.
        self.t0 = time.perf_counter() if self.warmup == 0 else None
    def fraction(self) -> float:
        "The share of the budget used so far (0 during the warm-up)."
        return 0. if self.t0 is None else (time.perf_counter() - self.t0)/self.seconds
    def after_batch(self, learn):
        if not learn.training: return
        sync(self.device)
        self.steps += 1
        if self.t0 is None:
            if self.steps == self.warmup: self.t0 = time.perf_counter()
            return
        self.imgs += len(learn.batch[0])
        self.secs = time.perf_counter() - self.t0
        if self.secs >= self.seconds and self.steps - self.warmup >= self.min_steps: raise CancelFitException()
    @property
    def images_per_s(self) -> float: return self.imgs/self.secs if self.secs else float('nan')
