"""Run folders: where an example run keeps its settings, and what a resumed run must keep.

A run writes ``<out>/<timestamp>/config.json`` with the settings it started from. ``--resume`` reads
them back: the data, the model and the seed must stay what they were for the checkpoint to fit and
for the resumed run to end where an uninterrupted one would, so a setting given again with another
value is refused, naming both values; only the settings the caller lists as changeable (the last
epoch, the device) may differ. Every failure is a ``RunFolderError`` whose message names the
folder and says what to do, for a script to print in one line.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..storage import atomic

CONFIG = "config.json"


class RunFolderError(Exception):
    """A run folder that cannot be made or resumed; the message says why, in one line."""


def create(out, settings: dict) -> Path:
    """A new ``<out>/<timestamp>/`` (a suffix when two runs start in the same second) holding
    ``config.json``; an ``out`` that is a file or cannot be written raises ``RunFolderError``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: a file is there, not a folder; choose another --out")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
        for suffix in ("", *(f"-{n}" for n in range(1, 1000))):
            folder = out / f"{stamp}{suffix}"
            try:
                folder.mkdir()  # exclusive: two runs started together get two folders
                break
            except FileExistsError:
                continue
        atomic.write_file(folder / CONFIG, lambda f: f.write(json.dumps(settings, indent=2).encode() + b"\n"),
                          "run folder")
    except OSError as exc:
        raise RunFolderError(f"--out {out}: cannot write a run folder there ({exc.strerror or exc}); "
                             "choose a writable --out") from exc
    return folder


def resumed_settings(folder, given: dict, changeable: tuple[str, ...]) -> dict:
    """The settings saved in ``folder/config.json``, with the ``changeable`` ones replaced by the
    values in ``given`` that are not None. Any other setting in ``given`` (not None) must equal the
    saved one."""
    folder = Path(folder)
    path = folder / CONFIG
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFolderError(f"--resume {folder}: no {CONFIG} there; is it a run folder?") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFolderError(f"--resume {folder}: {path} is damaged ({exc}); the run cannot be resumed "
                             "with its settings") from exc
    if not isinstance(saved, dict):
        raise RunFolderError(f"--resume {folder}: {path} should hold the run's settings as a JSON object, "
                             f"got {type(saved).__name__}")
    missing = sorted(set(given) - set(saved) - set(changeable))
    if missing:
        raise RunFolderError(f"--resume {folder}: {path} lacks the settings {', '.join(missing)} "
                             "(written by another version of this script, or edited?)")
    changed = [f"--{key.replace('_', '-')} {given[key]} (the run has {saved[key]})"
               for key in sorted(given) if key not in changeable and given[key] is not None and given[key] != saved[key]]
    if changed:
        allowed = " and ".join(f"--{key.replace('_', '-')}" for key in changeable)
        raise RunFolderError(f"--resume {folder}: a resumed run keeps its settings, but got {'; '.join(changed)}; "
                             f"only {allowed} may change (start a new run for other settings)")
    return {**saved, **{key: given[key] for key in changeable if given.get(key) is not None}}
