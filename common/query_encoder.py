"""The avg query tower as a numpy table, so that s09 answers without importing torch.

Importing torch takes 1.5-2 s on this machine: most of s09's start-up. The avg tower is linear up
to the final normalisation: with w_i the query's normalised pooling weights,
    vector = unit( head(sum_i w_i glove_i) ; lex_scale * sum_i w_i code_i )
           = unit( sum_i w_i T_i + [head.bias ; 0] ),    T_i = [head.W glove_i ; lex_scale * code_i]
so one row per word (T, vocab x dim, float32, memory-mapped) and the pooling weights are all it
needs. s05/s08 export it beside the index; tests/test_index.py checks it against the torch
tower. The GRU encoder is not linear: s09 uses torch for it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .artifacts import atomic_path


def paths(data_dir: Path, name: str) -> tuple[Path, Path]:
    base = Path(data_dir) / "indexes"
    return base / f"{name}.query_table.npy", base / f"{name}.query_weights.npz"


def export(model, data_dir: Path, name: str) -> str | None:
    """Write the query encoder of `model` for index `name`; None for a tower that is not linear."""
    import torch
    import torch.nn.functional as F
    cfg = model.config
    if cfg["encoder"] != "avg":
        return None
    tower = model.query_tower
    with torch.no_grad():
        emb = tower.emb.weight.detach().float().cpu()
        parts = [emb @ tower.head.weight.detach().float().cpu().T]
        if model.codes is not None:
            parts.append(tower.lex_scale.detach().float().cpu() * model.codes.cpu()[model.stems.cpu()])
        table = torch.cat(parts, 1).numpy().astype(np.float32)
        w = (F.softplus(tower.weights.weight.detach().float().cpu()[:, 0]) if tower.weights is not None
             else torch.ones(emb.shape[0])).numpy().astype(np.float32)
        bias = np.zeros(model.dim, np.float32)
        bias[:cfg["out_dim"]] = tower.head.bias.detach().float().cpu().numpy()
    tp, wp = paths(data_dir, name)
    tp.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(tp) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, table)
    with atomic_path(wp) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, weights=w, bias=bias, fingerprint=np.array(model.fingerprint()),
                     max_query_tokens=np.array(model.max_tokens("query")))
    return tp.name


class NumpyQueryEncoder:
    def __init__(self, data_dir: Path, name: str, vocab):
        tp, wp = paths(data_dir, name)
        self.table = np.load(tp, mmap_mode="r")
        z = np.load(wp)
        self.weights, self.bias, self.fingerprint = z["weights"], z["bias"], str(z["fingerprint"])
        from .vocab import MAX_QUERY_TOKENS  # an encoder exported before the limit was recorded
        self.max_len = int(z["max_query_tokens"]) if "max_query_tokens" in z.files else MAX_QUERY_TOKENS
        self.vocab = vocab
        self.dim = self.table.shape[1]

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(unit vectors, known words per text), as common.encode.encode_texts gives them."""
        from .vocab import UNK
        out = np.zeros((len(texts), self.dim), np.float32)
        known = np.zeros(len(texts), np.int64)
        for n, t in enumerate(texts):
            ids = np.asarray(self.vocab.encode(t, self.max_len) or [UNK], dtype=np.int64)
            known[n] = int((ids != UNK).sum())
            w = self.weights[ids]
            w = w / max(float(w.sum()), 1e-6)
            v = w @ self.table[ids] + self.bias
            out[n] = v / max(float(np.linalg.norm(v)), 1e-12)
        return out, known
