"""Where webly may write an output, and the hidden temporaries it writes it through.

One rule for every output path (`check_output`): an output is never one of its inputs, never
inside one and never holds one; it is never the current folder, the home folder or a folder
above either; and ``--overwrite`` replaces only an output of the same kind (`OutputKind`: a
dataset, an export, ...), never a folder webly did not write.

Outputs are built in a hidden temporary beside the target (`temp_path`:
``.NAME.tmp-HOST-PID-RANDOM``) and renamed over it. The name records its owner, so the next
writer of the same folder removes what a killed one left (`remove_stale`) and leaves alone what
a live process is still writing. Files are created with the permissions the umask gives
(`create_file`), as ``open`` creates them.

A folder of outputs is built the same way (`atomic_output`, or `claim_output` then
`publish_output`) and every single file webly writes goes through `replaced_file` (or
`write_atomic`, `write_json` for files inside a folder that is itself renamed into place);
`sha256_file` is the one checksum of a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from webly.errors import ConfigError, DataError

HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"
"""This machine, as temporaries' names record it (only letters, digits, dots and ``_``)."""
LEGACY_AGE = 24 * 3600.0
"""Seconds after which a temporary without an owner in its name (written by an older webly) is
taken for a killed run's and removed."""

_OWNED = re.compile(r"^\..+\.(?:tmp|old)-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-[0-9a-f]{12}$")


@dataclass(frozen=True)
class OutputKind:
    """A kind of output folder, as ``--overwrite`` recognises it: one holding the file
    ``marker`` (a path relative to the folder), a JSON object whose ``"format"`` is ``format``
    when that is given. ``what`` names the kind in messages (``"a webly dataset"``)."""

    what: str
    marker: str
    format: str | None = None

    def holds(self, folder: Path) -> bool:
        """Whether ``folder`` is an output of this kind."""
        path = folder / self.marker
        if not path.is_file():
            return False
        if self.format is None:
            return True
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(manifest, dict) and manifest.get("format") == self.format

    def describe(self) -> str:
        fmt = f" of format {self.format}" if self.format is not None else ""
        return f"no {self.marker}{fmt}"


def check_output(
    out: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    hosts: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    kind: OutputKind | None = None,
) -> None:
    """Check that ``out`` may be written (and, if it exists, replaced) before anything is.

    Parameters
    ----------
    out : the file or folder to write
    inputs : files and folders the command reads: ``out`` may not be one, lie inside one or
        hold one
    hosts : folders the command reads that hold outputs of their own (a run directory):
        ``out`` may lie inside one, but may not be one or hold one
    overwrite : whether an existing non-empty ``out`` may be replaced (``--overwrite``)
    kind : what an existing ``out`` must be to be replaced; None for outputs inside a folder
        webly owns (a run directory's stages), which only webly writes

    Raises
    ------
    ConfigError
        ``out`` overlaps an input, is a protected folder, or is not of ``kind``.
    DataError
        ``out`` exists and is not empty, without ``overwrite``.
    """
    target = Path(out)
    where = _resolved(target)
    for source in inputs:
        path = _resolved(Path(source))
        if where == path:
            raise ConfigError(
                f"{target} is the input {source}; inputs are never modified, choose another "
                "output path"
            )
        if path in where.parents:
            raise ConfigError(
                f"{target} is inside the input {source}; inputs are never modified, choose an "
                "output path outside it"
            )
    for source in (*inputs, *hosts):
        path = _resolved(Path(source))
        if where == path or where in path.parents:
            raise ConfigError(
                f"{target} holds the input {source}; choose an output path that holds none of "
                "the inputs"
            )
    for name, folder in _protected():
        if where == folder or where in folder.parents:
            raise ConfigError(
                f"{target} is {name} or a folder above it; name a new folder for the output"
            )
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    if not overwrite:
        raise DataError(f"{target} already exists; pass --overwrite or choose another path")
    if kind is not None and not (target.is_dir() and kind.holds(target)):
        raise ConfigError(
            f"{target} is not {kind.what} ({kind.describe()}); --overwrite replaces only "
            f"{kind.what}: choose another path, or remove {target} yourself"
        )


def _resolved(path: Path) -> Path:
    """``path`` absolute, with links and ``..`` resolved as far as it exists."""
    return Path(os.path.abspath(path.expanduser())).resolve()


def _protected() -> list[tuple[str, Path]]:
    """The folders no output may be or hold: the current folder and the home folder."""
    folders = []
    with contextlib.suppress(OSError):  # the current folder was deleted
        folders.append(("the current folder", Path.cwd().resolve()))
    with contextlib.suppress(OSError, RuntimeError):  # no home
        folders.append(("the home folder", Path.home().resolve()))
    return folders


def temp_path(target: str | os.PathLike[str], what: str = "tmp") -> Path:
    """A new hidden name beside ``target`` owned by this process:
    ``.NAME.{what}-HOST-PID-RANDOM``; `remove_stale` removes it once its owner has died."""
    target = Path(target)
    return target.parent / f".{target.name}.{what}-{HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def remove_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporaries beside ``target`` that killed runs left; return them.

    Removed are, in ``target``'s folder: every temporary named by `temp_path` whose owner,
    a process of this machine, has died (with those nested in it, such as ``..NAME.tmp-*``);
    and the temporaries of ``target`` written by an older webly, which name no owner, once
    they are `LEGACY_AGE` old. Those of live processes and of other machines are left alone.
    """
    target = Path(target)
    folder = target.parent
    legacy = re.compile(
        rf"^\.(?:\.{re.escape(target.name)}\.tmp-[0-9a-f]{{12}}|{re.escape(target.name)})"
        rf"\.(?:(?:tmp|old)-[0-9a-f]{{12}}|tmp-\d+|[a-z0-9_]{{8}}\.tmp)$"
    )
    try:
        entries = [entry for entry in folder.iterdir() if entry.name.startswith(".")]
    except OSError:  # no folder yet, or not readable: nothing to remove
        return []
    removed = []
    now = time.time()
    for entry in entries:
        owned = _OWNED.match(entry.name)
        if owned is not None:
            stale = owned["host"] == HOST and not _alive(int(owned["pid"]))
        else:
            try:
                stale = bool(legacy.match(entry.name)) and now - entry.lstat().st_mtime > LEGACY_AGE
            except OSError:
                stale = False
        if stale:
            _remove(entry)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine runs (a process of another user counts)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def create_file(path: str | os.PathLike[str]) -> int:
    """Create the new file ``path`` for writing and return its descriptor; its permissions are
    those the umask gives (0644 under umask 022), as ``open`` gives them, not
    ``tempfile.mkstemp``'s 0600."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


# --------------------------------------------------------------------------- whole folders


def claim_output(
    out: Path,
    overwrite: bool,
    *,
    kind: OutputKind | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    hosts: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Check ``out`` may be written and make a hidden temporary folder beside it to build in.

    ``out`` may not exist yet, or be an empty folder; anything else needs ``overwrite``, and
    then must be of ``kind``; it never overlaps ``inputs`` (`check_output` has the whole
    rule). Temporaries that killed writers left beside ``out`` are removed first.
    """
    out = Path(out)
    check_output(out, inputs=inputs, hosts=hosts, overwrite=overwrite, kind=kind)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    tmp = temp_path(out)
    tmp.mkdir()
    return tmp


def publish_output(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out`` (replacing what is there), durably."""
    fsync_path(tmp)
    trash = None
    if out.exists():
        trash = temp_path(out, "old")
        os.rename(out, trash)
    os.rename(tmp, out)
    fsync_path(out.parent)
    if trash is not None and trash.is_dir():
        shutil.rmtree(trash)
    elif trash is not None:
        trash.unlink()


@contextlib.contextmanager
def atomic_output(
    out: str | Path,
    overwrite: bool = False,
    *,
    kind: OutputKind | None = None,
    inputs: Iterable[str | os.PathLike[str]] = (),
    hosts: Iterable[str | os.PathLike[str]] = (),
) -> Iterator[Path]:
    """Build a folder atomically: yields a temporary folder that becomes ``out`` on success and
    is removed on error, so ``out`` is either the old content or the complete new one.

    Used for outputs of several datasets (e.g. ``train/``, ``test/`` splits). ``out`` is
    checked as `claim_output` checks it.
    """
    out = Path(out)
    tmp = claim_output(out, overwrite, kind=kind, inputs=inputs, hosts=hosts)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish_output(tmp, out)


# --------------------------------------------------------------------------- single files

_BLOCK = 1 << 24  # bytes hashed at a time


@contextlib.contextmanager
def replaced_file(target: str | os.PathLike[str], mode: str = "w") -> Iterator[IO[Any]]:
    """Yield a file opened in ``mode`` (``"w"``: UTF-8 text, ``"wb"``: bytes) that replaces
    ``target`` in one step on success.

    The data goes to a hidden temporary beside ``target`` (`temp_path`), which is fsynced and
    renamed over ``target`` when the ``with`` block ends normally (then the folder is fsynced),
    and deleted when it raises, so ``target`` is never left partly written.
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
    fsync_path(target.parent)


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file ``path`` by ``data`` in one step (`replaced_file`)."""
    with replaced_file(path, "wb") as fh:
        fh.write(data)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` and fsync it: a file inside a temporary folder
    that is renamed into place as a whole (`replaced_file` replaces a file on its own)."""
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of the file at ``path``, read in 16 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: str | os.PathLike[str]) -> str | None:
    """`sha256_file` of ``path``, None when there is no file."""
    try:
        return sha256_file(path)
    except FileNotFoundError:
        return None


def fsync_path(path: str | os.PathLike[str]) -> None:
    """Make the file or folder at ``path`` durable, whichever process (or library given only a
    path) wrote it."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
