"""Atomic writes: build the new file or folder under a temporary name next to the target, then
rename it over the target, so that a kill at any moment leaves either the old or the new version.

A killed write leaves its temporary behind. Temporaries are named
``.<target name>.<kind>-<process id>-<8 hex digits>``; the next write of the same target removes
those of processes that no longer exist (and any older than ``STALE_AFTER_S``, in case a process
id was reused), never anything else. Everything is created with the permissions an ordinary
``open`` or ``mkdir`` gives (0666 and 0777 less the umask), not the private 0600/0700 of
``tempfile``.

``locked`` serialises the writers of one folder (a data set): an operating-system lock on a file
in it, which the system releases when its holder ends, however it ends.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

STALE_AFTER_S = 24 * 3600


def temporary_path(target: Path, kind: str = "tmp") -> Path:
    """A fresh name next to ``target`` that ``stale_temporaries`` recognises as this process's."""
    return target.with_name(f".{target.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def owner_of(candidate: Path, target: Path, kind: str = "tmp") -> int | None:
    """The process id in a temporary's name, or None when it is not a temporary of ``target``."""
    match = re.fullmatch(rf"\.{re.escape(target.name)}\.{kind}-(\d+)-[0-9a-f]{{8}}", candidate.name)
    return int(match.group(1)) if match else None


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def temporaries(target: Path, kind: str = "tmp") -> list[tuple[Path, int]]:
    """``(path, owner pid)`` of every temporary of ``target`` of this ``kind``."""
    found = []
    for entry in os.scandir(target.parent):
        pid = owner_of(Path(entry.path), target, kind)
        if pid is not None:
            found.append((Path(entry.path), pid))
    return found


def is_stale(path: Path, pid: int) -> bool:
    """Left by a process that is gone (another one than this), or too old to be a running write."""
    try:
        age = time.time() - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    return (pid != os.getpid() and not process_exists(pid)) or age > STALE_AFTER_S


def remove_stale(target: Path, kinds: tuple[str, ...] = ("tmp",)) -> None:
    """Remove the temporaries of ``target`` that killed writes left behind."""
    for kind in kinds:
        for path, pid in temporaries(target, kind):
            if is_stale(path, pid):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)


def create_file(path: Path):
    """Open a new file for writing (binary), failing if it exists; mode 0666 less the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    return os.fdopen(fd, "wb")


def write_file(path, write, owner: str) -> None:
    """Create or replace the file ``path`` atomically: ``write(f)`` fills a temporary file (binary)
    next to it, which is flushed to the disk and renamed over ``path``. Temporaries of earlier
    killed writes of ``path`` are removed first; an ``OSError`` names ``path``."""
    path = Path(os.path.abspath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = temporary_path(path)
    try:
        with create_file(tmp) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_failed(exc, path, owner) from exc
        raise


def write_failed(exc: OSError, path, owner: str) -> OSError:
    """An ``OSError`` like ``exc`` (same errno) whose message names ``path``; a full disk says so."""
    reason = exc.strerror or str(exc)
    message = f"{owner}: could not write {os.fspath(path)}: {reason}"
    if exc.errno is not None:
        return OSError(exc.errno, message)
    return OSError(message + " (is the disk full?)")


LOCK_NAME = ".lock"


@contextlib.contextmanager
def locked(folder: Path):
    """Hold the writers' lock of ``folder`` (waiting while another process holds it) for the
    ``with`` block. The lock file ``folder/.lock`` stays: removing it would let a waiting writer and
    a new one both believe they hold the lock."""
    fd = os.open(Path(folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        else:
            while True:
                try:
                    msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
                    break
                except OSError:
                    continue
        yield
    finally:
        os.close(fd)  # releases the lock
