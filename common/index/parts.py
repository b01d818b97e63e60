"""Encoded parts: the passages' full vectors encoded in N parts, by N processes, machines or GPUs.

`s05 --encode-part I/N` (s08 the same) encodes rows shard_bounds(total, N)[I-1] of passages_tok
with the checkpoint into data/encoded/<model>-<passages>/part-I-of-N.npy (float16), with a state
beside it (the model, passages and precision it was encoded with, how far it got: a killed part
resumes). Parts take no lock on the index: any number run at once. A plain s05/s08 afterwards
finds every part done and only builds the index from them; a missing, unfinished or mismatched
part is named with the command that makes it.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..artifacts import MissingInput, load_npy_artifact
from .graph import shard_bounds
from .state import read_progress
from .vectors import VectorWriter, index_vectors, vectors_path

PART = re.compile(r"^part-(\d+)-of-(\d+)\.json$")


def parse(text: str) -> tuple[int, int]:
    """"2/4" -> (2, 4), for argparse."""
    import argparse
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise argparse.ArgumentTypeError(f"must be I/N with 1 <= I <= N (e.g. 2/4), not {text!r}")
    return int(m.group(1)), int(m.group(2))


def folder(data_dir: Path, model_fp: str, passages_fp: str) -> Path:
    return Path(data_dir) / "encoded" / f"{model_fp[:16]}-{passages_fp[:8]}"


def paths(data_dir: Path, model_fp: str, passages_fp: str, i: int, n: int) -> tuple[Path, Path]:
    f = folder(data_dir, model_fp, passages_fp)
    return f / f"part-{i}-of-{n}.npy", f / f"part-{i}-of-{n}.json"


def rows(total: int, i: int, n: int) -> tuple[int, int]:
    return shard_bounds(total, n)[i - 1]


def find(data_dir: Path, meta: dict, total: int, script: str) -> list[dict] | None:
    """The complete parts of this model's encoding of these passages, in order; None when there are
    none. Refuses (one line naming the part and its command) when some are missing or unfinished."""
    f = folder(data_dir, meta["model_fingerprint"], meta["passages_tok"])
    found = sorted((int(m.group(2)), int(m.group(1))) for p in (f.glob("part-*.json") if f.exists() else [])
                   if (m := PART.match(p.name)))
    if not found:
        return None
    n = max(k for k, _ in found)  # the most recent split wins when several were tried
    out = []
    for i in range(1, n + 1):
        vp, sp = paths(data_dir, meta["model_fingerprint"], meta["passages_tok"], i, n)
        st = read_progress(sp)
        lo, hi = rows(total, i, n)
        ok = st is not None and st.get("complete") and st.get("rows") == [lo, hi] and \
            all(st.get(k) == meta[k] for k in ("model_fingerprint", "passages_tok", "dim"))
        if not ok:
            what = "missing" if st is None else ("unfinished" if not st.get("complete") else "of another model or passages")
            raise MissingInput(sp, script, message=f"encoded part {i}/{n} ({sp}) is {what}: run {script} "
                                                  f"--encode-part {i}/{n} (then {script} again)")
        load_npy_artifact(vp, f"{script} --encode-part {i}/{n}", mmap_mode="r", shape=(hi - lo, meta["dim"]),
                          dtype="float16")
        out.append(dict(st, vectors=str(vp)))
    return out


class PartsSource:
    """A backend's build source over finished parts: the vectors are read, not encoded, and
    written into the index's vector file on the way (as EncodeSource does)."""

    def __init__(self, data_dir: Path, name: str, meta: dict, parts: list[dict], ids: np.ndarray, batch: int = 50_000):
        self.data_dir, self.name, self.meta, self.parts, self.batch = Path(data_dir), name, meta, parts, batch
        self.ids = ids

    def single_thread(self):
        pass

    def sample(self, rows: np.ndarray) -> np.ndarray:
        out = []
        for p in self.parts:
            plo, phi = p["rows"]
            r = rows[(rows >= plo) & (rows < phi)]
            if len(r):
                out.append(np.asarray(np.load(p["vectors"], mmap_mode="r")[r - plo], np.float32))
        v = np.concatenate(out)
        return index_vectors(v, self.meta["out_dim"], self.meta["lex_dim"], self.meta["index_dim"])

    def batches(self, lo: int, hi: int, start: int):
        full = VectorWriter(vectors_path(self.data_dir, self.name))
        try:
            for p in self.parts:
                plo, phi = p["rows"]
                a, b = max(plo, lo + start), min(phi, hi)
                if a >= b:
                    continue
                vecs = np.load(p["vectors"], mmap_mode="r")
                for s in range(a, b, self.batch):
                    e = min(s + self.batch, b)
                    v = np.asarray(vecs[s - plo:e - plo], np.float32)
                    full.write(s, v)
                    r = np.arange(s, e)
                    yield r, self.ids[r], index_vectors(v, self.meta["out_dim"], self.meta["lex_dim"], self.meta["index_dim"]), None
        finally:
            full.close()
