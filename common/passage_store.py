"""Passage text by id, for showing results, without loading the whole passage table.

The index stores only ids and vectors (Chroma's documents cost ~30% of indexing speed because
it builds a full-text index over them, and the passage table already holds the text). This store is
a memory-mapped copy of passages.parquet's text: one bytes file plus offsets, and the ids sorted
for binary search. Opening it costs nothing; a lookup reads only the passages asked for.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .artifacts import atomic_path, read_json, require, write_json

FILES = ("text.bin", "offsets.npy", "sorted_ids.npy", "order.npy")


class PassageStore:
    def __init__(self, folder: Path):
        f = Path(folder)
        self.text = np.memmap(f / "text.bin", dtype=np.uint8, mode="r") if (f / "text.bin").stat().st_size else np.zeros(0, np.uint8)
        self.offsets = np.load(f / "offsets.npy", mmap_mode="r")
        self.sorted_ids = np.load(f / "sorted_ids.npy", mmap_mode="r")
        self.order = np.load(f / "order.npy", mmap_mode="r")

    def get(self, ids) -> list[str]:
        from .corpus import find_sorted
        pos, found = find_sorted(self.sorted_ids, ids)
        out = []
        for p, ok in zip(pos, found):
            if not ok:
                out.append("")
                continue
            r = int(self.order[p])
            out.append(bytes(self.text[self.offsets[r]:self.offsets[r + 1]]).decode("utf-8", errors="replace"))
        return out


def build(data_dir: Path, batch_rows: int = 100_000) -> Path:
    """(Re)build data/passage_text/ from passages.parquet when it is missing or stale."""
    d = Path(data_dir)
    pm = require(d / "passages.parquet")
    out = d / "passage_text"
    stamp = out / "source.json"
    if stamp.exists() and read_json(stamp).get("passages") == pm["fingerprint"] and all((out / n).exists() for n in FILES):
        return out
    out.mkdir(parents=True, exist_ok=True)
    ids_parts, lens = [], []
    with atomic_path(out / "text.bin") as tmp, open(tmp, "wb") as fh:
        for b in pq.ParquetFile(d / "passages.parquet").iter_batches(batch_size=batch_rows, columns=["passage_id", "text"]):
            ids_parts.append(b.column(0).to_numpy())
            for t in b.column(1).to_pylist():
                enc = t.encode("utf-8")
                fh.write(enc)
                lens.append(len(enc))
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    order = np.argsort(ids, kind="stable")
    for name, arr in (("offsets.npy", offsets), ("sorted_ids.npy", ids[order]), ("order.npy", order)):
        with atomic_path(out / name) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
    write_json(stamp, {"passages": pm["fingerprint"]})
    return out


def open_store(data_dir: Path) -> PassageStore:
    return PassageStore(build(data_dir))
