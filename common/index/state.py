"""An index's progress file (its state) and the writer lock: what every backend and the registry share.

data/indexes/<name>.json is written after every safely stored batch; "complete": true only once
the index holds every passage. One process at a time builds indexes in a data dir: s05 and s08
hold data/indexes/writer.lock for as long as they run (the OS releases it when the process ends,
even when killed); a second writer refuses in one line.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..artifacts import StageError, read_json, read_json_artifact, write_json


class WriterBusy(StageError):
    """Another process holds the data dir's writer lock."""


class BuildIncomplete(StageError):
    """A build ended without every passage in its graph (re-running the stage rebuilds it)."""

ACTIVE = "active_index.json"
LOCK = "writer.lock"
_locks: dict = {}  # path -> open file holding a writer lock for the life of the process

__all__ = ["ACTIVE", "progress_path", "read_progress", "write_json", "read_json", "acquire_writer_lock",
           "writer_active", "same_build"]


def progress_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.json"


def read_progress(pp: Path) -> dict | None:
    """A build's progress file for a writer: None when missing or damaged (the build then starts
    again, replacing it)."""
    try:
        return read_json_artifact(pp, missing_ok=True)
    except StageError:
        return None


def same_build(state: dict | None, meta: dict, total: int) -> bool:
    """Whether a progress file is of the build described by (meta, total): resume it, else restart."""
    return state is not None and all(state.get(k) == v for k, v in meta.items()) and state.get("total") == total


def lock_path(folder: Path) -> Path:
    return Path(folder) / LOCK


def acquire_writer_lock(folder: Path, hint: str = ""):
    """Take <folder>/writer.lock for this process, or refuse when another process writes there."""
    import fcntl
    p = lock_path(folder).resolve()
    if str(p) in _locks:
        return
    p.parent.mkdir(parents=True, exist_ok=True)
    f = open(p, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        who = f.read().strip() or "another process"
        f.close()
        raise WriterBusy(f"{p.parent} is being written by {who}; one process at a time builds an index in a "
                         f"data dir: wait for it{hint}")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()} ({Path(sys.argv[0]).name})\n")
    f.flush()
    _locks[str(p)] = f


def writer_active(folder: Path) -> str | None:
    """Who holds <folder>/writer.lock (a short description), or None when nobody writes."""
    import fcntl
    p = lock_path(folder).resolve()
    if str(p) in _locks or not p.exists():
        return None
    try:
        with open(p) as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:
                return f.read().strip() or "another process"
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    except OSError:
        return None
    return None
