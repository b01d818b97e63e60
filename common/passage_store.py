"""Passage text by id, for showing results, without loading the whole passage table.

The index stores only ids and vectors (Chroma's documents cost ~30% of indexing speed because
it builds a full-text index over them, and the passage table already holds the text). This store is
a memory-mapped copy of passages.parquet's text: one bytes file plus offsets, and the ids sorted
for binary search. Opening it costs nothing; a lookup reads only the passages asked for.

A passage with a title (BEIR corpora) is stored as title + " " + text, as BM25 and the encoder see
it; a table with a `doc_id` column (a corpus's own string ids) keeps those too, so that s09 shows them.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from .artifacts import StageError, atomic_path, damage, file_facts, read_json_artifact, require, write_json

FILES = ("text.bin", "offsets.npy", "sorted_ids.npy", "order.npy")
DOC_FILES = ("doc_ids.bin", "doc_offsets.npy")


class PassageStore:
    def __init__(self, folder: Path):
        f = Path(folder)
        self.text = np.memmap(f / "text.bin", dtype=np.uint8, mode="r") if (f / "text.bin").stat().st_size else np.zeros(0, np.uint8)
        self.offsets = np.load(f / "offsets.npy", mmap_mode="r")
        self.sorted_ids = np.load(f / "sorted_ids.npy", mmap_mode="r")
        self.order = np.load(f / "order.npy", mmap_mode="r")
        self.doc_text, self.doc_offsets = None, None
        if all((f / n).exists() for n in DOC_FILES):
            self.doc_text = np.fromfile(f / "doc_ids.bin", dtype=np.uint8)
            self.doc_offsets = np.load(f / "doc_offsets.npy")

    @property
    def has_doc_ids(self) -> bool:
        return self.doc_offsets is not None

    def get(self, ids) -> list[str]:
        return self._strings(ids, self.text, self.offsets)

    def doc_ids(self, ids) -> list[str] | None:
        """The corpus's own string id of each passage id; None when the corpus has none (MS MARCO)."""
        return self._strings(ids, self.doc_text, self.doc_offsets) if self.has_doc_ids else None

    def _strings(self, ids, blob, offsets) -> list[str]:
        from .corpus import find_sorted
        pos, found = find_sorted(self.sorted_ids, ids)
        out = []
        for p, ok in zip(pos, found):
            if not ok:
                out.append("")
                continue
            r = int(self.order[p])
            out.append(bytes(blob[offsets[r]:offsets[r + 1]]).decode("utf-8", errors="replace"))
        return out


def build(data_dir: Path, batch_rows: int = 100_000) -> Path:
    """(Re)build data/passage_text/ from passages.parquet when it is missing or stale."""
    d = Path(data_dir)
    pm = require(d / "passages.parquet")
    out = d / "passage_text"
    stamp = out / "source.json"
    pf = pq.ParquetFile(d / "passages.parquet")
    names = pf.schema_arrow.names
    has_title, has_doc = "title" in names, "doc_id" in names
    files = FILES + (DOC_FILES if has_doc else ())
    try:
        st = read_json_artifact(stamp, missing_ok=True) or {}
    except StageError:
        st = {}  # a damaged stamp: built again below, by rename
    if st.get("passages") == pm["fingerprint"] and all((out / n).exists() for n in files) and \
            not any(damage(out / n, facts) for n, facts in (st.get("files") or {}).items()):
        return out  # (a store whose files are not the recorded size is built again, by rename)
    out.mkdir(parents=True, exist_ok=True)
    for n in DOC_FILES:
        (out / n).unlink(missing_ok=True)
    cols = ["passage_id", "text"] + (["title"] if has_title else []) + (["doc_id"] if has_doc else [])
    ids_parts, lens, doc_lens = [], [], []
    with atomic_path(out / "text.bin") as tmp, open(tmp, "wb") as fh, \
            atomic_path(out / "doc_ids.bin") as dtmp, open(dtmp, "wb") as dfh:
        for b in pf.iter_batches(batch_size=batch_rows, columns=cols):
            b = b.to_pydict()
            ids_parts.append(np.asarray(b["passage_id"], dtype=np.int64))
            titles = b["title"] if has_title else [None] * len(b["text"])
            for title, t in zip(titles, b["text"]):
                enc = (f"{title} {t}" if title else t).encode("utf-8")
                fh.write(enc)
                lens.append(len(enc))
            for x in b.get("doc_id", []):
                enc = x.encode("utf-8")
                dfh.write(enc)
                doc_lens.append(len(enc))
        if not has_doc:
            dfh.close()
            dtmp.unlink()
    ids = np.concatenate(ids_parts) if ids_parts else np.zeros(0, np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    order = np.argsort(ids, kind="stable")
    arrays = [("offsets.npy", offsets), ("sorted_ids.npy", ids[order]), ("order.npy", order)]
    if has_doc:
        doc_offsets = np.zeros(len(doc_lens) + 1, dtype=np.int64)
        np.cumsum(doc_lens, out=doc_offsets[1:])
        arrays.append(("doc_offsets.npy", doc_offsets))
    for name, arr in arrays:
        with atomic_path(out / name) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
    write_json(stamp, {"passages": pm["fingerprint"], "files": {n: file_facts(out / n) for n in files}})
    return out


def open_store(data_dir: Path) -> PassageStore:
    return PassageStore(build(data_dir))
