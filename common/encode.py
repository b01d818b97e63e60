"""Batched encoding of tokenised rows into unit vectors, and loading checkpoints."""
from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from .artifacts import DamagedInput, LineageMismatch, MissingInput, damage, require
from .model import TwoTowerModel
from .stages import producer, script
from .vocab import TokenTable


def autocast(device: torch.device):
    """bf16 mixed precision on CUDA; plain fp32 on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_model(path: Path, vocab_fp: str, device) -> tuple[TwoTowerModel, dict]:
    """Load a checkpoint, refusing one trained on another vocabulary."""
    path = Path(path)
    if not path.exists():
        raise MissingInput(path, producer(path.name) or script("s04"))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain containers only
    except Exception as e:
        raise DamagedInput(path, damage(path, None) or f"not a readable checkpoint ({type(e).__name__})")
    if not isinstance(ckpt, dict) or "config" not in ckpt or "state_dict" not in ckpt:
        raise DamagedInput(path, "not a checkpoint of this project")
    if ckpt.get("vocab_fingerprint") != vocab_fp:
        got = ckpt.get("vocab_fingerprint")
        raise LineageMismatch(path.name, "vocab.pkl", got, vocab_fp, script("s04"),
                              f"{path} was trained on another vocabulary ({got} != {vocab_fp}): re-run {script('s04')}")
    require(path)  # a checkpoint without a manifest is from a training run that was interrupted
    emb = None
    if not TwoTowerModel.holds_embeddings(ckpt):
        emb = load_embeddings(path.parent, ckpt["config"].get("embeddings"))
    model = TwoTowerModel.from_checkpoint(ckpt, embeddings=emb).to(device)
    return model, ckpt


def load_embeddings(data_dir: Path, fingerprint: str | None = None) -> np.ndarray:
    """data/embeddings.npy, memory-mapped (copy-on-write: torch may wrap it, nothing writes it),
    refused when it is not the one `fingerprint` names (a checkpoint's word table)."""
    p = Path(data_dir) / "embeddings.npy"
    m = require(p)
    if fingerprint and m["fingerprint"] != fingerprint:
        raise LineageMismatch("the checkpoint", p.name, fingerprint, m["fingerprint"], script("s04"),
                              f"{p} is not the word table this checkpoint was trained with: re-run {script('s04')} "
                              f"(or {script('s03')} with the settings it had)")
    return np.load(p, mmap_mode="c")


@torch.no_grad()
def encode_rows(model: TwoTowerModel, table: TokenTable, rows: np.ndarray, which: str, device,
                batch_size: int = 1024, max_len: int | None = None, progress=None) -> np.ndarray:
    """Vectors for table rows `rows`, in that order. Rows are batched by length so that little
    padding is computed; the order is restored at the end. max_len: the model's limit for `which`."""
    model.eval()
    max_len = max_len or model.max_tokens(which)
    enc = model.encode_passage if which == "passage" else model.encode_query
    rows = np.asarray(rows)
    out = np.empty((len(rows), model.dim), dtype=np.float32)
    order = np.argsort(table.lengths_of(rows), kind="stable")
    for s in range(0, len(rows), batch_size):
        idx = order[s:s + batch_size]
        ids, lens = table.batch(rows[idx], max_len)
        with autocast(device):
            v = enc(torch.from_numpy(ids).to(device), torch.from_numpy(lens).to(device))
        out[idx] = v.float().cpu().numpy()
        if progress is not None:
            progress.update(len(idx))
    return out


def encode_texts(model: TwoTowerModel, vocab, texts: list[str], device, which: str = "query",
                 max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Vectors for raw texts; also returns how many known (non-<unk>) words each text had.
    max_len: the model's limit for `which`."""
    from .vocab import UNK
    max_len = max_len or model.max_tokens(which)
    ids = [vocab.encode(t, max_len) or [UNK] for t in texts]
    known = np.array([sum(1 for i in x if i != UNK) for x in ids])
    width = max(len(x) for x in ids)
    mat = np.zeros((len(ids), width), dtype=np.int64)
    for i, x in enumerate(ids):
        mat[i, :len(x)] = x
    lens = np.array([len(x) for x in ids], dtype=np.int64)
    enc = model.encode_query if which == "query" else model.encode_passage
    with torch.no_grad():
        v = enc(torch.from_numpy(mat).to(device), torch.from_numpy(lens).to(device))
    return v.float().cpu().numpy(), known

