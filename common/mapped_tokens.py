"""A token table's arrays as .npy files beside its Parquet, read back memory-mapped.

`TokenTable.read` (common/vocab.py) decodes a token table's Parquet into three arrays (ids, flat
tokens, offsets): at 10M passages 2 GB of the reading stage's own memory, in s04, s06, s07 and s10
alike. The first read also writes those arrays to `<table>.parquet.mmap/`; every later read maps
them instead, so their pages are the kernel's (dropped under pressure, shared by processes reading
the same table) and not the stage's. The folder is a cache: it names the Parquet's size and mtime
it was made from, and one that is stale, damaged or missing is made again from the Parquet.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .artifacts import remove_stale_tmp, swap_dir, tmp_path

LAYOUT = 1
NAMES = ("ids", "flat", "offsets")


def cache_dir(parquet: Path) -> Path:
    parquet = Path(parquet)
    return parquet.with_name(parquet.name + ".mmap")


def _source(parquet: Path) -> dict:
    st = Path(parquet).stat()
    return {"layout": LAYOUT, "parquet_bytes": st.st_size, "parquet_mtime_ns": st.st_mtime_ns}


def load(parquet: Path):
    """(ids, flat, offsets) memory-mapped, or None when the cache is absent, stale or damaged."""
    d = cache_dir(parquet)
    try:
        meta = json.loads((d / "source.json").read_text())
        if {k: meta.get(k) for k in ("layout", "parquet_bytes", "parquet_mtime_ns")} != _source(parquet):
            return None
        arrays = tuple(np.load(d / f"{n}.npy", mmap_mode="r") for n in NAMES)
    except (OSError, ValueError, json.JSONDecodeError, AttributeError):
        return None
    ids, flat, offsets = arrays
    n, v = meta.get("rows"), meta.get("values")
    if not (ids.shape == (n,) and offsets.shape == (n + 1,) and flat.shape == (v,)
            and (n == 0 or (offsets[0] == 0 and offsets[-1] == v))):
        return None
    return arrays


def save(parquet: Path, ids: np.ndarray, flat: np.ndarray, offsets: np.ndarray) -> bool:
    """Write the cache beside `parquet` (a whole folder, renamed into place: a reader sees all of it
    or none). False when it cannot be written (a read-only folder, a full disk): the caller keeps
    its arrays in memory."""
    d = cache_dir(parquet)
    remove_stale_tmp(d)
    tmp = tmp_path(d)
    try:
        tmp.mkdir()
        for n, a in zip(NAMES, (ids, flat, offsets)):
            np.save(tmp / f"{n}.npy", np.ascontiguousarray(a))
        (tmp / "source.json").write_text(json.dumps({**_source(parquet), "rows": len(ids), "values": len(flat)}))
        if load(parquet) is not None:  # another process (a torchrun rank) wrote it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            return True
        swap_dir(tmp, d)  # a stale or damaged one is replaced whole
        return True
    except OSError:  # another process renamed its own copy in first, or the folder is not writable
        shutil.rmtree(tmp, ignore_errors=True)
        return False
