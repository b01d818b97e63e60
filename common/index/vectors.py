"""An index's vectors: the full ones (rescoring) and the short ones its graph is built over.

With the default model (lex_dim 0) the index vectors are the full vectors. With a lexical part
(--lex-dim, common/model.py) the graph indexes a shorter vector,

    index vector = unit( [ semantic ; lexical[:L] * sqrt(lex_dim / L) ] )     (index_dim = out_dim + L)

(the lexical part is a random projection with i.i.d. coordinates, so its first L dims are a
noisier sketch of the same words; the factor keeps the two parts' balance), and the full vectors
rescore the graph's top `depth`. The full vectors live beside the index as one float16 file in
passages_tok row order, memory-mapped (data/indexes/<name>.vectors.npy), with the sorted passage
ids and their rows (<name>.ids.npy) for lookups; hybrid reads its features from the same file.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..artifacts import BadSetting, atomic_path

INDEX_DIM = 192   # at most this many dims go into the graph (all of the default 192-d vectors)
DEPTH = 100       # graph candidates the full vectors rescore per query


def check_index_dim(out_dim: int, lex_dim: int, index_dim: int):
    if lex_dim > 0 and index_dim < out_dim + lex_dim and index_dim <= out_dim:
        raise BadSetting(f"--index-dim {index_dim} must exceed the semantic part ({out_dim} dims)")


def index_vectors(x: np.ndarray, out_dim: int, lex_dim: int, index_dim: int) -> np.ndarray:
    """The short vectors the graph indexes (unit length); x itself when index_dim covers it."""
    x = np.asarray(x, dtype=np.float32)
    if index_dim >= x.shape[1] or lex_dim <= 0:
        return x
    check_index_dim(out_dim, lex_dim, index_dim)
    keep = index_dim - out_dim
    y = np.concatenate([x[:, :out_dim], x[:, out_dim:out_dim + keep] * np.float32(np.sqrt(lex_dim / keep))], 1)
    return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)


# ------------------------------------------------------------------ the full vectors
def vectors_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.vectors.npy"


def ids_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / "indexes" / f"{name}.ids.npy"


def create_vector_file(data_dir: Path, name: str, ids: np.ndarray, dim: int, resume: bool):
    """The float16 (n, dim) file the build fills row by row (in place: a killed build keeps the rows
    it wrote, which the kernel holds even when the process is killed).
    Also writes the sorted ids and their rows, for lookups. Returns the file's path."""
    vp, ip = vectors_path(data_dir, name), ids_path(data_dir, name)
    vp.parent.mkdir(parents=True, exist_ok=True)
    if resume and vp.exists():
        try:
            mm = np.load(vp, mmap_mode="r")
            if mm.shape == (len(ids), dim) and mm.dtype == np.float16:
                return vp
        except (ValueError, OSError):
            pass
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    with atomic_path(ip) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.stack([ids[order], order.astype(np.int64)]))
    with atomic_path(vp) as tmp:
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(ids), dim)).flush()
    return vp


class VectorWriter:
    """Writes rows of a .npy matrix file (the index's float16 vectors, s10's pool files) with
    pwrite, not through a memory map: mapped pages written by the build would count as the
    process's resident memory."""

    def __init__(self, path: Path):
        import os
        mm = np.load(path, mmap_mode="r")
        (self.rows, self.dim), self.dtype = mm.shape, mm.dtype
        del mm
        self.fd = os.open(path, os.O_RDWR)
        self.offset = os.fstat(self.fd).st_size - self.rows * self.dim * self.dtype.itemsize  # after the header

    def write(self, start: int, vecs: np.ndarray):
        import os
        if start < 0 or start + len(vecs) > self.rows or vecs.shape[1] != self.dim:
            raise ValueError(f"rows {start}..{start + len(vecs)} x {vecs.shape[1]} do not fit {self.rows} x {self.dim}")
        os.pwrite(self.fd, np.ascontiguousarray(vecs, dtype=self.dtype).tobytes(),
                  self.offset + start * self.dim * self.dtype.itemsize)

    def close(self):
        import os
        os.fsync(self.fd)
        os.close(self.fd)


class FullVectors:
    """Full vectors by passage id, memory-mapped: opening costs nothing, a lookup reads its rows."""

    def __init__(self, data_dir: Path, name: str, rerun: str = "s08_reencode_all.py"):
        from ..artifacts import damaged, load_npy_artifact
        vp, ip = vectors_path(data_dir, name), ids_path(data_dir, name)
        self.path = vp
        self.vecs = load_npy_artifact(vp, rerun, mmap_mode="r")  # a cut or foreign file: one line
        si = load_npy_artifact(ip, rerun, mmap_mode="r")
        if self.vecs.ndim != 2:
            raise damaged(vp, f"the wrong shape for the index {self.vecs.shape}", rerun)
        if si.ndim != 2 or si.shape != (2, self.vecs.shape[0]) or si.dtype != np.int64:
            raise damaged(ip, f"the wrong shape for the index ({si.shape} {si.dtype}, expected (2, "
                              f"{self.vecs.shape[0]:,}) int64)", rerun)
        self.sorted_ids, self.order = si[0], si[1]

    @property
    def row_ids(self) -> np.ndarray:
        """Passage id of each row: the inverse of the sorted-id lookup."""
        if not hasattr(self, "_row_ids"):
            out = np.empty(len(self.sorted_ids), np.int64)
            out[np.asarray(self.order)] = self.sorted_ids
            self._row_ids = out
        return self._row_ids

    def rows(self, ids) -> tuple[np.ndarray, np.ndarray]:
        """(rows, found) for int64 ids."""
        from ..corpus import find_sorted
        pos, found = find_sorted(self.sorted_ids, ids)
        return np.asarray(self.order[pos]) if len(self.order) else pos, found

    def get(self, ids) -> np.ndarray:
        """float32 (len(ids), dim); zeros for an unknown id."""
        rows, found = self.rows(ids)
        out = np.zeros((len(rows), self.vecs.shape[1]), np.float32)
        if found.any():
            r = rows[found]
            srt = np.argsort(r)  # ascending rows: fewer seeks in the mapped file
            got = np.empty((len(r), self.vecs.shape[1]), np.float32)
            got[srt] = self.vecs[r[srt]]
            out[found] = got
        return out
