"""TwoTowerModel: a query tower and a passage tower that map token ids to unit vectors.

Each tower: word vectors (GloVe, frozen or fine-tuned) -> encoder -> linear head -> L2 norm.
- encoder "avg": mean of the word vectors over the real tokens, each weighted by a learned
  per-word scalar initialised from the corpus IDF (an IDF the model learns), so "the" and "of"
  stop drowning out the one word that matters.
- encoder "gru": a bidirectional GRU over the real (unpadded) tokens, via packed sequences, so
  padding never reaches the state; its outputs are pooled with the same learned word weights.
Optionally each word also gets a fixed random "identity" code (`id_dim`): pooled, it sketches the
bag of words (a random projection of weighted term counts), so a rare word in the query that
GloVe cannot place still matches the same word in a passage.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DEFAULT_CONFIG = dict(
    encoder="avg",        # avg | gru
    out_dim=128,          # size of the vectors stored in the index
    shared=True,          # one tower for queries and passages
    freeze_emb=False,     # fine-tune the (corpus-sized) word vectors
    token_weights=True,   # learned per-word pooling weight, IDF-initialised
    id_dim=0,             # fixed random per-word identity code size (0 = off)
    gru_hidden=128,
    temperature=0.05,
)


class Tower(nn.Module):
    def __init__(self, cfg: dict, emb: nn.Embedding, weights: nn.Embedding | None, idcode: torch.Tensor | None):
        super().__init__()
        self.cfg = cfg
        self.emb = emb
        self.weights = weights
        self.register_buffer("idcode", idcode if idcode is not None else torch.zeros(0), persistent=False)
        d = emb.embedding_dim
        if cfg["encoder"] == "gru":
            self.gru = nn.GRU(d, cfg["gru_hidden"], batch_first=True, bidirectional=True)
            d = 2 * cfg["gru_hidden"]
        elif cfg["encoder"] != "avg":
            raise ValueError(f"unknown encoder {cfg['encoder']!r}: use avg or gru")
        d += cfg["id_dim"]
        self.head = nn.Linear(d, cfg["out_dim"])

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).float()
        x = self.emb(ids)
        w = mask
        if self.weights is not None:
            w = F.softplus(self.weights(ids).squeeze(-1)) * mask
        w = w / w.sum(1, keepdim=True).clamp_min(1e-6)
        if self.cfg["encoder"] == "gru":
            packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.gru(packed)
            x, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        pooled = torch.einsum("bt,btd->bd", w, x.float())
        if self.cfg["id_dim"]:
            pooled = torch.cat([pooled, torch.einsum("bt,btd->bd", w, self.idcode[ids])], dim=1)
        return F.normalize(self.head(pooled), dim=-1)


class TwoTowerModel(nn.Module):
    def __init__(self, vocab_size: int, emb_dim: int, config: dict | None = None,
                 embeddings: np.ndarray | None = None, idf: np.ndarray | None = None, seed: int = 0):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG, **(config or {}))
        cfg.update(vocab_size=vocab_size, emb_dim=emb_dim)
        self.config = cfg
        g = torch.Generator().manual_seed(seed)
        idcode = None
        if cfg["id_dim"]:
            # regenerated from the seed, not stored: same codes at train and query time
            idcode = torch.randn(vocab_size, cfg["id_dim"], generator=g) / cfg["id_dim"] ** 0.5
            idcode[0] = 0
            cfg["id_seed"] = seed

        def make_tower():
            emb = nn.Embedding(vocab_size, emb_dim, padding_idx=0, sparse=True)
            if embeddings is not None:
                emb.weight.data.copy_(torch.as_tensor(embeddings))
            emb.weight.requires_grad_(not cfg["freeze_emb"])
            wts = None
            if cfg["token_weights"]:
                wts = nn.Embedding(vocab_size, 1, sparse=True)
                init = torch.as_tensor(idf if idf is not None else np.ones(vocab_size, np.float32)).float()
                # softplus^-1 so that the initial weight equals the IDF
                wts.weight.data.copy_(torch.log(torch.expm1(init.clamp_min(1e-3))).unsqueeze(1))
            return Tower(cfg, emb, wts, idcode)

        self.query_tower = make_tower()
        self.passage_tower = self.query_tower if cfg["shared"] else make_tower()

    def encode_query(self, ids, lengths):
        return self.query_tower(ids, lengths)

    def encode_passage(self, ids, lengths):
        return self.passage_tower(ids, lengths)

    def sparse_parameters(self):
        return [p for n, p in self.named_parameters() if p.requires_grad and (".emb." in n or ".weights." in n)]

    def dense_parameters(self):
        sp = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in sp]

    # ------------------------------------------------------------ checkpoints
    def fingerprint(self) -> str:
        h = hashlib.sha1()
        for k, v in sorted(self.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().numpy().tobytes()[:1 << 20])
        return h.hexdigest()[:16]

    def checkpoint(self, **extra) -> dict:
        return {"config": self.config, "state_dict": {k: v.cpu() for k, v in self.state_dict().items()},
                "fingerprint": self.fingerprint(), **extra}

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "TwoTowerModel":
        cfg = dict(ckpt["config"])
        m = cls(cfg["vocab_size"], cfg["emb_dim"], cfg, seed=cfg.get("id_seed", 0))
        m.load_state_dict(ckpt["state_dict"])
        m.eval()
        return m
