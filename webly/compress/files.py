"""Durable file writes and checksums for the compress, export and predict outputs.

Folders are built in a temporary folder that `webly.data.store.atomic_output` renames into
place; the helpers here make each file in it durable (fsynced) before that rename, and replace
single files in one step (temporary file beside the target, fsync, rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from webly._fs import create_file, remove_stale, temp_path
from webly.errors import DataError

_BLOCK = 1 << 24  # bytes hashed at a time


def fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk (for files written by a library given only a path)."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` and fsync it."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file at ``path``, read in 16 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def replaced_file(target: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a file opened in ``mode`` that replaces ``target`` in one step on success.

    The data goes to a hidden temporary file in ``target``'s folder, which is fsynced and renamed
    over ``target`` when the ``with`` block ends normally, and deleted when it raises, so
    ``target`` is never left partly written.
    """
    target = Path(target)
    if target.is_dir():
        raise DataError(f"{target} is a folder; name the file to write, e.g. {target}/out.csv")
    if not target.parent.is_dir():
        raise DataError(
            f"{target}: folder {target.parent} does not exist; create it or choose another path"
        )
    remove_stale(target)
    temp = temp_path(target)
    descriptor = create_file(temp)  # the umask's permissions, as open() gives them
    try:
        text = "b" not in mode
        with os.fdopen(
            descriptor, mode, encoding="utf-8" if text else None, newline="\n" if text else None
        ) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
