"""Files that stages pass to each other: atomic writes, manifests, and lineage checks.

Every output is written to a temporary name and renamed into place, so a killed stage leaves
the previous good file or none. Beside each output sits `<name>.manifest.json`: which script
wrote it, its settings, a fingerprint of its own, and the fingerprints of the inputs it was
made from, and the file's byte size (with a sha256 of its content where it is under 1 MB). A
later stage that reads two files checks that they descend from the same inputs and refuses, naming
the script to re-run, when they do not.

Damage is told apart from absence: `require()` compares the file with what its manifest recorded
(size, hash) and checks its format's magic bytes, all before any work starts, and the typed readers
below (read_json_artifact, read_parquet_artifact, load_npy_artifact, load_pickle_artifact) turn
whatever a damaged file raises into one StageError that names the file, what is wrong with it and
the script to re-run.

Errors are typed (MissingInput, DamagedInput, LineageMismatch, BadSetting, ...: all StageError,
each holding the path and script its message names); run_main prints any of them as one line.
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

HASH_LIMIT = 1 << 20  # files up to this size get a sha256 in their manifest (hashing 1 MB: ~1 ms)


class StageError(RuntimeError):
    """A problem the user fixes by doing something; printed as one line, no traceback. The
    subclasses below carry what the message is made of, for code that handles them."""


class MissingInput(StageError):
    """An input file that is not there: "<path> not found: run <producer> first" (`message` for the
    few that say it otherwise)."""

    def __init__(self, path, producer: str | None = None, detail: str | None = None, message: str | None = None):
        self.path, self.producer = Path(path), producer or producer_of(path)
        super().__init__(message or f"{path} not found: run {self.producer} first" + (f" ({detail})" if detail else ""))


class DamagedInput(StageError):
    """An input file that is there but not what its producer writes: "<path> is <what>: re-run <producer>"
    (`message` for the few that say it otherwise)."""

    def __init__(self, path, what: str, producer: str | None = None, message: str | None = None):
        self.path, self.what, self.producer = Path(path), what, producer or producer_of(path)
        super().__init__(message or f"{path} is {what}: re-run {self.producer}")


class LineageMismatch(StageError):
    """Two inputs that do not descend from the same files: "<child> was made from another <parent>
    (<got> != <want>): re-run <rerun>" (`message` for the few that say it otherwise)."""

    def __init__(self, child: str, parent: str, got, want, rerun: str, message: str | None = None):
        self.child, self.parent, self.got, self.want, self.rerun = child, parent, got, want, rerun
        super().__init__(message or f"{child} was made from another {parent} ({got} != {want}): re-run {rerun}")


class BadSetting(StageError):
    """An option (or a combination of options) the stage cannot work with."""


class BadSource(StageError):
    """A dataset or file given on the command line (not a stage's output) that cannot be read."""


class BadInstall(StageError):
    """A package the project needs is missing or not the one it should be."""


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


def swap_dir(tmp: Path, out: Path):
    """Put the complete folder `tmp` in place of `out`: the old one is moved aside first and then
    deleted, so a reader finds the whole old folder or the whole new one, never a mix."""
    import shutil
    tmp, out = Path(tmp), Path(out)
    old = None
    if out.exists():
        old = tmp_path(out)
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_json(path, obj):
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))


def read_json(path):
    return json.loads(Path(path).read_text())


def manifest_path(path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


# Marks a data folder that s10 prepared from another dataset (data/external/<name>/): every file in
# it is s10's, whatever its name, and what it was prepared from is recorded in it.
PREPARED = "prepared.json"


def producer_of(path) -> str:
    """The script that writes `path` (for "run/re-run X" messages)."""
    path = Path(path)
    name = path.name[:-len(".manifest.json")] if path.name.endswith(".manifest.json") else path.name
    from .stages import producer, script
    if any((p / PREPARED).exists() for p in (path.parent, path.parent.parent)):
        return producer("external")
    found = producer(name) or producer(path.parent.name)  # a file inside data/bm25/ or data/indexes/
    if found:
        return found
    return script("s04") if name.endswith(".pt") else "the stage that makes it"


def file_facts(path) -> dict:
    """What a manifest records of a file so that a reader can tell it is intact: its byte size,
    and a sha256 of its content where it is small."""
    path = Path(path)
    n = path.stat().st_size
    out = {"bytes": n}
    if n <= HASH_LIMIT:
        out["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def damage(path, facts: dict | None = None) -> str | None:
    """What is wrong with the file at `path` (a few words), or None when it looks intact: compared
    with `facts` (file_facts() when it was written) and by its format's magic bytes. Microseconds."""
    path = Path(path)
    try:
        n = path.stat().st_size
    except OSError:
        return "missing"
    if path.is_dir():
        return None
    fmt = format_damage(path, n, facts)  # the format's own evidence first: "not a .npy file", ...
    if fmt:
        return fmt
    want = (facts or {}).get("bytes")
    if want is not None and n != want:
        if n < want and path.suffix not in (".parquet", ".npy"):  # (those two would show a cut)
            return f"cut short ({n:,} of the {want:,} bytes its manifest records)"
        return f"not what its manifest says ({n:,} bytes, the manifest records {want:,})"
    if (facts or {}).get("sha256") and n <= HASH_LIMIT and \
            hashlib.sha256(path.read_bytes()).hexdigest() != facts["sha256"]:
        return "not what its manifest says (its content hash differs)"
    return None


_MAGIC = {".npy": (b"\x93NUMPY", "not a .npy file"), ".npz": (b"PK", "not a .npz file"),
          ".pt": (b"PK", "not a torch checkpoint"), ".pkl": (b"\x80", "not a pickle")}


def format_damage(path: Path, n: int | None = None, manifest: dict | None = None) -> str | None:
    """A wrong format, from the first and last bytes: Parquet starts and ends with PAR1, .npy starts
    with its magic string and is as long as its header promises (and of the shape its manifest's
    stats record, if they do), .npz and .pt are zip files, a pickle starts with its protocol byte."""
    path = Path(path)
    n = path.stat().st_size if n is None else n
    suffix = path.suffix
    if suffix == ".npy":
        return npy_damage(path, n, ((manifest or {}).get("stats") or {}).get("shape"))
    if suffix == ".parquet":
        if n < 12:
            return "not a Parquet file (too short)"
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(n - 4)
            tail = f.read(4)
        if head != b"PAR1":
            return "not a Parquet file"
        if tail != b"PAR1":
            return "cut short (a Parquet file without its footer)"
        return None
    if suffix in _MAGIC:
        magic, what = _MAGIC[suffix]
        with open(path, "rb") as f:
            head = f.read(len(magic))
        if n == 0:
            return "empty"
        if head != magic:
            return what
    return None


def npy_header(path: Path):
    """(shape, dtype, data offset) from a .npy file's header; ValueError when it has none."""
    import numpy as np
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            shape, _fortran, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0) else
                                      np.lib.format.read_array_header_2_0(f) if version == (2, 0) else
                                      np.lib.format._read_array_header(f, version))
        except Exception as e:
            raise ValueError(str(e)) from None
        return tuple(shape), dtype, f.tell()


def npy_damage(path: Path, n: int, shape=None) -> str | None:
    import numpy as np
    try:
        hshape, hdtype, offset = npy_header(path)
    except ValueError:
        with open(path, "rb") as f:
            head = f.read(6)
        return "a .npy file whose header is cut short or damaged" if head == b"\x93NUMPY" else "not a .npy file"
    if hdtype.hasobject:
        return "not what this stage writes (an array of Python objects)"
    need = offset + int(np.prod(hshape, dtype=np.int64)) * hdtype.itemsize
    if n < need:
        return f"cut short ({n:,} of the {need:,} bytes its header promises)"
    if shape is not None and list(shape) != list(hshape):
        return f"the wrong shape {hshape} (its manifest records {tuple(shape)})"
    return None


def damaged(path, what: str, producer: str | None = None) -> DamagedInput:
    return DamagedInput(path, what, producer)


def read_json_artifact(path, producer: str | None = None, missing_ok: bool = False):
    """A JSON file another stage wrote: None (missing_ok) or "run X first" when it is absent, one
    line naming the damage when it is not JSON (cut short, random bytes) or not a JSON object."""
    path = Path(path)
    producer = producer or producer_of(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise MissingInput(path, producer)
    except OSError as e:
        raise damaged(path, f"unreadable ({e.strerror or type(e).__name__})", producer)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise damaged(path, "not a JSON file (not even text)", producer)
    except json.JSONDecodeError as e:
        cut = e.pos >= len(raw.rstrip()) - 1 or raw.strip() == b"" or e.msg.startswith("Unterminated")
        raise damaged(path, "cut short (its JSON ends part-way)" if cut else f"not valid JSON ({e.msg})", producer)
    if not isinstance(obj, dict):
        raise damaged(path, f"not what this stage writes (a JSON {type(obj).__name__}, not an object)", producer)
    return obj


def load_npy_artifact(path, producer: str | None = None, mmap_mode=None, shape: tuple | None = None,
                      dtype=None):
    """np.load of a .npy file another stage wrote, checked first from its header (microseconds):
    the format, the length the header promises (a cut file is caught before any mmap fails), and
    `shape` (None for any length on that axis) and `dtype` when given."""
    import numpy as np
    path = Path(path)
    producer = producer or producer_of(path)
    if not path.exists():
        raise MissingInput(path, producer)
    bad = npy_damage(path, path.stat().st_size)
    if bad:
        raise damaged(path, bad, producer)
    hshape, hdtype, _ = npy_header(path)
    if shape is not None and (len(shape) != len(hshape) or
                              any(w is not None and int(w) != h for w, h in zip(shape, hshape))):
        want = "(" + ", ".join("any" if w is None else f"{int(w):,}" for w in shape) + ")"
        raise damaged(path, f"the wrong shape {tuple(hshape)} (expected {want})", producer)
    if dtype is not None and hdtype != np.dtype(dtype):
        raise damaged(path, f"of the wrong type {hdtype} (expected {np.dtype(dtype)})", producer)
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except Exception as e:
        raise damaged(path, f"unreadable ({type(e).__name__})", producer)


def _open_parquet(path: Path, producer: str, columns: list | None):
    """The ParquetFile of a file another stage wrote, with these columns; a damaged file or a
    missing column is one line."""
    import pyarrow.parquet as pq
    if not path.exists():
        raise MissingInput(path, producer)
    bad = format_damage(path)
    if bad:
        raise damaged(path, bad, producer)
    try:
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    except Exception as e:
        raise damaged(path, f"a damaged Parquet file ({type(e).__name__})", producer)
    lacking = [c for c in (columns or []) if c not in names]
    if lacking:
        raise damaged(path, f"not what this stage writes (no column {', '.join(lacking)})", producer)
    return pf


def _damaged_read(path: Path, e: Exception, producer: str):
    return damaged(path, f"a damaged Parquet file ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})",
                   producer)


def read_parquet_artifact(path, producer: str | None = None, columns: list | None = None):
    """pyarrow.parquet.read_table of a file another stage wrote; a damaged file or a missing column
    is one line."""
    path = Path(path)
    producer = producer or producer_of(path)
    pf = _open_parquet(path, producer, columns)
    try:
        return pf.read(columns=columns)
    except Exception as e:
        raise _damaged_read(path, e, producer)


def parquet_row_groups(path, producer: str | None = None, columns: list | None = None):
    """(ParquetFile, an iterator over its row groups as tables): read_parquet_artifact one row
    group at a time (10M passages' tokens read without a second copy)."""
    path = Path(path)
    producer = producer or producer_of(path)
    pf = _open_parquet(path, producer, columns)

    def groups():
        for i in range(pf.num_row_groups):
            try:
                yield pf.read_row_group(i, columns=columns)
            except Exception as e:
                raise _damaged_read(path, e, producer)
    return pf, groups()


# What a vocabulary pickle may hold: plain containers and numpy arrays (numpy 1.x and 2.x names).
SAFE_PICKLE_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"), ("builtins", "slice"),
    ("builtins", "complex"), ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
}


def load_pickle_artifact(path, producer: str | None = None):
    """A pickle another stage wrote, through an unpickler that builds only plain containers and
    numpy arrays: a planted pickle in a shared data folder cannot run code, it is refused."""
    import io
    import pickle

    path = Path(path)
    producer = producer or producer_of(path)

    class Restricted(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in SAFE_PICKLE_GLOBALS:
                return super().find_class(module, name)
            raise DamagedInput(path, f"a pickle holding a {module}.{name} object", producer,
                               f"{path} holds a {module}.{name} object, which this file never holds: refused "
                               f"(it would run code on loading); re-run {producer}")

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise MissingInput(path, producer)
    try:
        return Restricted(io.BytesIO(raw)).load()
    except StageError:
        raise
    except EOFError:
        raise damaged(path, "cut short (the pickle ends part-way)", producer)
    except Exception as e:
        what = "cut short (the pickle ends part-way)" if "truncated" in str(e).lower() or "ran out" in str(e).lower() \
            else f"not a readable pickle ({type(e).__name__})"
        raise damaged(path, what, producer)


def prepared_for(folder, want: dict, defaults: dict | None = None) -> bool:
    """Whether `folder` was prepared from what `want` names: its PREPARED record holds the same
    values (`defaults` for a key an older record lacks). Missing or damaged: prepare it again."""
    try:
        have = read_json_artifact(Path(folder) / PREPARED, missing_ok=True)
    except StageError:
        return False
    if have is None:
        return False
    return all(have.get(k, (defaults or {}).get(k)) == v for k, v in want.items())


def mark_prepared(folder, record: dict):
    """Record what `folder` was prepared from (written last: a folder without it is prepared again)."""
    write_json(Path(folder) / PREPARED, record)


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
    if Path(path).is_file():
        m.update(file_facts(path))  # bytes (+ sha256 when small): require() compares them
    write_json(manifest_path(path), m)
    return m


def require(path, what: str | None = None) -> dict:
    """Return the manifest of an input file, or stop with which script to run first; a file that
    is not what its manifest records (size, hash, format) stops with what is wrong with it."""
    path = Path(path)
    producer = producer_of(path)
    if not path.exists():
        raise MissingInput(path, producer, what)
    mp = manifest_path(path)
    if not mp.exists():
        raise DamagedInput(path, "without a manifest", producer,
                           f"{path} has no manifest (written by an older or interrupted run): re-run {producer}")
    m = read_json_artifact(mp, producer)
    if not isinstance(m.get("fingerprint"), str):
        raise damaged(mp, "not a manifest (no fingerprint)", producer)
    bad = damage(path, m)
    if bad:
        raise damaged(path, bad, m.get("script") or producer)
    return m


def check_lineage(child: dict, input_name: str, parent: dict, rerun: str):
    """Refuse when `child` was not made from this exact `parent`."""
    got = child.get("inputs", {}).get(input_name)
    if got != parent["fingerprint"]:
        raise LineageMismatch(child["file"], parent["file"], got, parent["fingerprint"], rerun)
