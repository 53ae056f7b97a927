"""Exit 1 (naming them) when notebooks are not as `nbdev_clean` would leave them; touches no file.

`make test` runs this from the repository root; the fix it prints is `make clean-nbs`. The notebooks and the
cleaning options are nbdev's own (settings.ini: nbs_path, clear_all, allowed_*metadata_keys, clean_ids).
"""
import json, sys
from pathlib import Path
from execnb.nbio import nb2str
from fastcore.xtras import globtastic
from nbdev.clean import clean_nb
from nbdev.config import get_config


def cleaned(text, cfg):
    "The text `nbdev_clean` would write for a notebook whose file holds `text`."
    nb = json.loads(text)
    clean_nb(nb, cfg.clear_all, cfg.get('allowed_metadata_keys', '').split(),
             cfg.get('allowed_cell_metadata_keys', '').split(), cfg.clean_ids)
    return nb2str(nb)


def main():
    cfg = get_config()
    nbs = sorted(globtastic(cfg.nbs_path, file_glob='*.ipynb', skip_folder_re='^[_.]'))
    dirty = []
    for f in nbs:
        name, text = Path(f).relative_to(cfg.config_path), Path(f).read_text(encoding='utf-8')
        try:
            if cleaned(text, cfg) != text: dirty.append(str(name))
        except (ValueError, KeyError) as e: dirty.append(f'{name} (not a readable notebook: {e})')
    if dirty:
        print(f'{len(dirty)} of {len(nbs)} notebooks are not clean (nbdev_clean would change them):', file=sys.stderr)
        for f in dirty: print(f'  {f}', file=sys.stderr)
        print('Fix: make clean-nbs (runs nbdev_clean), then check `git diff nbs/` and commit.', file=sys.stderr)
        return 1
    print(f'{len(nbs)} notebooks are clean')
    return 0


if __name__ == '__main__': sys.exit(main())
