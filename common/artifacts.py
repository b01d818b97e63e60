"""Files that stages pass to each other: atomic writes, manifests, and lineage checks.

Every output is written to a temporary name and renamed into place, so a killed stage leaves
the previous good file or none. Beside each output sits `<name>.manifest.json`: which script
wrote it, its settings, a fingerprint of its own, and the fingerprints of the inputs it was
made from. A later stage that reads two files checks that they descend from the same inputs and
refuses, naming the script to re-run, when they do not.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
import uuid
from pathlib import Path

# Which script makes which file: used in "run sXX first" messages.
PRODUCERS = {
    "queries.parquet": "s00_combine_data.py",
    "passages.parquet": "s00_combine_data.py",
    "triplets.parquet": "s01_create_triplets.py",
    "vocab.pkl": "s02_tkn_ms_marco.py",
    "queries_tok.parquet": "s02_tkn_ms_marco.py",
    "passages_tok.parquet": "s02_tkn_ms_marco.py",
    "embeddings.npy": "s03_build_embedding_matrix.py",
    "s04_model.pt": "s04_train_tower.py",
    "hard_negatives.parquet": "s06_mine_hard_negatives.py",
    "s07_model.pt": "s07_train_w_hard_negatives.py",
    "best_model.pt": "s07_train_w_hard_negatives.py",
    "active_index.json": "s05_encode_docs_to_chromadb.py",
}


class StageError(RuntimeError):
    """A problem the user fixes by doing something; printed as one line, no traceback."""


def run_main(main):
    """Run a script's main(); StageError and Ctrl-C become one clean line and an exit code."""
    try:
        main()
    except StageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("\ninterrupted: re-run the same command to resume", file=sys.stderr)
        sys.exit(130)


def tmp_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def remove_stale_tmp(path: Path):
    """Delete temporary files that a killed earlier run left beside `path` (their process is gone)."""
    path = Path(path)
    for t in path.parent.glob(f".{glob_escape(path.name)}.tmp-*"):
        try:
            pid = int(t.name.rsplit(".tmp-", 1)[1].split("-")[0])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            if t.is_dir() and not t.is_symlink():
                import shutil
                shutil.rmtree(t, ignore_errors=True)
            else:
                t.unlink(missing_ok=True)


def glob_escape(s: str) -> str:
    import glob
    return glob.escape(s)


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    The old manifest of `path` is removed just before the rename: a stage killed between writing
    its output and writing the output's new manifest leaves a file with no manifest (which
    `require` refuses, naming the script to re-run), never a new file under an old manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(path)
    tmp = tmp_path(path)
    try:
        yield tmp
        if tmp.exists():
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            if not path.name.endswith(".manifest.json"):
                manifest_path(path).unlink(missing_ok=True)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(path):
    return json.loads(Path(path).read_text())


def manifest_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def write_manifest(path, script: str, settings: dict | None = None, inputs: dict | None = None,
                   stats: dict | None = None, fingerprint: str | None = None) -> dict:
    """Record how `path` was made. `inputs` maps a name to an input's manifest (or fingerprint)."""
    inputs = {k: (v["fingerprint"] if isinstance(v, dict) else v) for k, v in (inputs or {}).items()}
    if fingerprint is None:
        # New every time the file is rewritten: a later stage can tell it was made from an older one.
        fingerprint = hashlib.sha1(f"{path}{time.time_ns()}{uuid.uuid4()}".encode()).hexdigest()[:16]
    m = {"file": Path(path).name, "script": script, "fingerprint": fingerprint,
         "settings": settings or {}, "inputs": inputs, "stats": stats or {},
         "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_json(manifest_path(path), m)
    return m


def require(path, what: str | None = None) -> dict:
    """Return the manifest of an input file, or stop with which script to run first."""
    path = Path(path)
    producer = PRODUCERS.get(path.name, "s04_train_tower.py" if path.suffix == ".pt" else "the stage that makes it")
    if not path.exists():
        raise StageError(f"{path} not found: run {producer} first"
                         + (f" ({what})" if what else ""))
    mp = manifest_path(path)
    if not mp.exists():
        raise StageError(f"{path} has no manifest (written by an older or interrupted run): re-run {producer}")
    return read_json(mp)


def check_lineage(child: dict, input_name: str, parent: dict, rerun: str):
    """Refuse when `child` was not made from this exact `parent`."""
    got = child.get("inputs", {}).get(input_name)
    if got != parent["fingerprint"]:
        raise StageError(f"{child['file']} was made from another {parent['file']} "
                         f"({got} != {parent['fingerprint']}): re-run {rerun}")
