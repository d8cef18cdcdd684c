"""Resume: one rule for every step of a run that a later run may skip.

A step (a pipeline stage, a zoo member, a clean round) keeps a JSON record file that says the
``config_hash`` it was made under and its ``state``: ``running`` while it works (so that a
killed step is never taken for finished), then ``done`` (or ``failed``). A step is skipped when
its record says ``done`` under the hash it would run with now (`finished`); a folder claimed
for another hash is emptied first (`claim`). Records are replaced atomically (`mark`).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from webly._fs import write_atomic

HASH, STATE = "config_hash", "state"
DONE, RUNNING, FAILED = "done", "running", "failed"


def read_record(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when there is none or it is unreadable (a step whose
    record cannot be read runs again)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(record: Mapping[str, Any] | None, digest: str) -> bool:
    """Whether ``record`` says its step is done under the config hash ``digest``."""
    return record is not None and record.get(STATE) == DONE and record.get(HASH) == digest


def finished(path: Path, digest: str) -> dict[str, Any] | None:
    """The record in ``path`` when its step is done under ``digest``, else None."""
    record = read_record(path)
    return record if is_done(record, digest) else None


def mark(path: Path, digest: str, state: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Replace the record in ``path`` by ``fields`` with ``digest`` and ``state``, atomically;
    return what was written."""
    record = {**fields, HASH: digest, STATE: state}
    write_atomic(path, json.dumps(record, indent=1).encode())
    return record


def claim(folder: Path, name: str, digest: str, fields: Mapping[str, Any]) -> None:
    """Make ``folder`` the step's, under ``digest``: empty it when its record ``name`` says
    another hash (or is unreadable), then mark it ``running``."""
    path = folder / name
    if folder.exists():
        record = read_record(path)
        if record is None or record.get(HASH) != digest:
            shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    mark(path, digest, RUNNING, fields)
