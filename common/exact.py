"""Exact top-k search by dot product (torch, chunked): s10's reference for the index, training's
validation and the evaluation of a checkpoint without an index. Never imported by s09."""
from __future__ import annotations

import numpy as np
import torch


@torch.no_grad()
def search_exact(qv: np.ndarray, pv: np.ndarray, k: int, device, chunk: int = 1024, pchunk: int = 1 << 18):
    """Exact top-k by dot product (unit vectors: cosine). Returns (indices, scores). The pool (float32
    or float16) is scored `pchunk` passages at a time, converted to float32 chunk by chunk, and at
    most ~64M scores are held at once: at 1M passages, scoring 1,024 queries against the whole
    float32 pool at once took s10 to a 9.86 GB peak."""
    qv = np.asarray(qv, dtype=np.float32)
    k = min(k, len(pv))
    best_v = torch.full((len(qv), k), -float("inf"))
    best_i = torch.zeros((len(qv), k), dtype=torch.long)
    for ps in range(0, len(pv), pchunk):
        # a copy: the pool may be a read-only memory-mapped file
        P = torch.from_numpy(np.array(pv[ps:ps + pchunk], dtype=np.float32)).to(device)
        kk = min(k, len(P))
        step = max(1, min(chunk, (1 << 26) // len(P)))
        for s in range(0, len(qv), step):
            Q = torch.from_numpy(qv[s:s + step]).to(device)
            v, i = torch.topk(Q @ P.T, kk, dim=1)
            cv = torch.cat([best_v[s:s + step], v.float().cpu()], 1)
            ci = torch.cat([best_i[s:s + step], i.cpu() + ps], 1)
            top = torch.topk(cv, k, dim=1)
            best_v[s:s + step], best_i[s:s + step] = top.values, ci.gather(1, top.indices)
        del P
    return best_i.numpy(), best_v.numpy()
