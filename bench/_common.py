"Small helpers shared by the long-running bench scripts (run as `python bench/NAME.py`, so this folder is on sys.path)."
import json, time
from pathlib import Path

from miniai.learner import Callback


class WallTimeCB(Callback):
    "Training + validation seconds summed over epochs; saved in the checkpoint (it has a state dict), so a resumed run keeps counting."
    order = 0
    def __init__(self): self.seconds, self.t0 = 0., None
    def state_dict(self): return {'seconds': self.seconds + (0. if self.t0 is None else time.time() - self.t0)}  # mid-epoch: the epoch so far too
    def load_state_dict(self, sd): self.seconds = sd['seconds']
    def before_epoch(self, learn): self.t0 = time.time()
    def after_epoch(self, learn): self.seconds, self.t0 = self.seconds + time.time() - self.t0, None


def write_json(path, obj):
    "Write `obj` as JSON to `path` through a temporary file, so a killed run never leaves half a file."
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix('.tmp'); tmp.write_text(json.dumps(obj, indent=1)); tmp.replace(path)
