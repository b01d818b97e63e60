"""TwoTowerModel: a query tower and a passage tower that map token ids to unit vectors.

Each token carries its word vector from s03 (frozen: a few thousand training pairs cannot move
the vectors of 400,000 words without breaking them for the words they never show). By default
these are the teacher's vectors (common/teacher.py: all-MiniLM-L6-v2's embedding of the word alone,
mean-centred, unit length); `s03 --vectors glove` gives GloVe's. Optionally (`lex_dim` > 0) it
also carries a fixed random "lexical identity" code, one per word stem (`lex_dim` dims, N(0, 1/lex_dim)):
  pooled, these codes are a random projection of the passage's weighted bag of stems, so the
  cosine of two such sketches approximates their weighted term overlap. A rare word ("xpressbet")
  that GloVe cannot place still matches the same word in a passage, as BM25 would.

Each tower pools its tokens with weights w_i = softplus(a learned scalar per word), initialised to
the word's corpus IDF (an IDF the model learns), normalised over the real tokens (padding never
counts). Then:
    semantic = head( sum_i w_i vec_i )                     encoder "avg"
    semantic = head( GRU(vec_1..vec_n) at step n )         encoder "gru", packed: no padding enters
    lexical  = lex_scale * sum_i w_i code_stem(i)
    vector   = normalise([semantic ; lexical])             dim = out_dim + lex_dim

The head starts as a projection onto the leading principal directions of the teacher's embeddings
of training passages (common/train.py), so that the untrained tower already lies in (a 192-d view
of) the teacher's space. Frozen word vectors are not stored in checkpoints: the checkpoint names
data/embeddings.npy by its fingerprint and the model maps that file when loaded.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .vocab import MAX_PASSAGE_TOKENS, MAX_QUERY_TOKENS

DEFAULT_CONFIG = dict(
    encoder="avg",        # avg | gru
    out_dim=192,          # semantic part of the vector (the index's width)
    lex_dim=0,            # lexical-identity part (0 = off: BM25 matches words in hybrid)
    lex_scale=10.0,       # initial weight of the lexical part (learned)
    shared=False,         # False: query and passage towers have their own weights
    freeze_emb=True,      # keep the GloVe vectors fixed
    token_weights=True,   # learned per-word pooling weight, IDF-initialised
    gru_hidden=64,
    # the GRU reads a passage's first gru_max tokens: a cap of its own, below max_passage_tokens,
    # because it steps through the tokens one by one (its cost grows with the length)
    gru_max=128,
    temperature=0.05,
    # tokens each tower reads: s02's limits, which s04 copies in (common/vocab.py)
    max_query_tokens=MAX_QUERY_TOKENS,
    max_passage_tokens=MAX_PASSAGE_TOKENS,
)


def _inv_softplus(x: torch.Tensor) -> torch.Tensor:
    return x + torch.log(-torch.expm1(-x))


def stem_map(words: list[str]) -> np.ndarray:
    """Word id -> stem id (ids 0 and 1 kept for <pad> and <unk>), with the Snowball stemmer."""
    import Stemmer
    st = Stemmer.Stemmer("english")
    stems: dict[str, int] = {}
    out = np.zeros(len(words), dtype=np.int64)
    out[:2] = [0, 1]
    for i, w in enumerate(words[2:], 2):
        out[i] = stems.setdefault(st.stemWord(w), len(stems) + 2)
    return out


class Tower(nn.Module):
    def __init__(self, cfg: dict, vocab_size: int, emb: nn.Embedding, idf: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        self.emb = emb  # shared between towers: the GloVe table is the same
        self.weights = nn.Embedding(vocab_size, 1, sparse=True) if cfg["token_weights"] else None
        if self.weights is not None:
            self.weights.weight.data.copy_(_inv_softplus(idf.clamp_min(1e-3)).unsqueeze(1))
        self.wnet = None
        if cfg.get("weight_fn") and self.weights is not None:
            # the pooling weight's change from IDF as a function of the word's vector, shared by all
            # words (a word the training pairs never show moves with the words it resembles); the
            # per-word table stays at IDF while training, and checkpoints bake the sum into it
            self.weights.weight.requires_grad_(False)
            self.wnet = nn.Sequential(nn.Linear(emb.embedding_dim, int(cfg["weight_fn"])), nn.Tanh(),
                                      nn.Linear(int(cfg["weight_fn"]), 1))
            nn.init.zeros_(self.wnet[2].weight)
            nn.init.zeros_(self.wnet[2].bias)
        d = emb.embedding_dim
        if cfg["encoder"] == "gru":
            self.gru = nn.GRU(d, cfg["gru_hidden"], batch_first=True)
            d = cfg["gru_hidden"]
        elif cfg["encoder"] != "avg":
            raise ValueError(f"unknown encoder {cfg['encoder']!r}: use avg or gru")
        self.head = nn.Linear(d, cfg["out_dim"])
        self.lex_scale = nn.Parameter(torch.tensor(float(cfg["lex_scale"])))

    def forward(self, ids, lengths, stems, codes):
        mask = (torch.arange(ids.shape[1], device=ids.device)[None, :] < lengths[:, None]).float()
        if self.weights is not None:
            raw = self.weights(ids).squeeze(-1)
            if self.wnet is not None:
                raw = raw + self.wnet(self.emb(ids).float()).squeeze(-1)
            w = F.softplus(raw) * mask
        else:
            w = mask
        w = w / w.sum(1, keepdim=True).clamp_min(1e-6)
        if self.cfg["encoder"] == "avg":
            sem = F.embedding_bag(ids, self.emb.weight, per_sample_weights=w, mode="sum",
                                  sparse=self.emb.sparse and self.emb.weight.requires_grad)
        else:
            L = min(ids.shape[1], self.cfg["gru_max"])
            packed = nn.utils.rnn.pack_padded_sequence(self.emb(ids[:, :L]), lengths.cpu().clamp(1, L),
                                                       batch_first=True, enforce_sorted=False)
            _, h = self.gru(packed)
            sem = h[-1]
        parts = [self.head(sem)]
        if codes is not None:
            lex = F.embedding_bag(stems[ids], codes, per_sample_weights=w, mode="sum")
            parts.append(self.lex_scale * lex)
        return F.normalize(torch.cat(parts, -1).float(), dim=-1)


class TwoTowerModel(nn.Module):
    def __init__(self, vocab_size: int, emb_dim: int, config: dict | None = None,
                 embeddings: np.ndarray | None = None, idf: np.ndarray | None = None,
                 stems: np.ndarray | None = None, seed: int = 0, head_init: np.ndarray | None = None):
        super().__init__()
        cfg = dict(DEFAULT_CONFIG, **(config or {}))
        cfg.update(vocab_size=int(vocab_size), emb_dim=int(emb_dim))
        if stems is None:
            stems = np.arange(vocab_size) if "n_stems" not in cfg else np.zeros(vocab_size, np.int64)
        n_stems = int(cfg.get("n_stems", int(np.max(stems)) + 1 if len(stems) else 1))
        cfg.update(n_stems=n_stems, code_seed=int(cfg.get("code_seed", seed)))
        self.config = cfg
        emb = nn.Embedding(vocab_size, emb_dim, padding_idx=0, sparse=True)
        if embeddings is not None:
            if cfg["freeze_emb"] and isinstance(embeddings, np.memmap):
                # a frozen table is read, never written: map the file instead of copying it
                emb.weight = nn.Parameter(torch.from_numpy(embeddings), requires_grad=False)
            else:
                emb.weight.data.copy_(torch.as_tensor(np.asarray(embeddings)))
        emb.weight.requires_grad_(not cfg["freeze_emb"])
        idf_t = torch.as_tensor(idf if idf is not None else np.ones(vocab_size, np.float32)).float()
        self.register_buffer("stems", torch.as_tensor(stems, dtype=torch.long))
        codes = None
        if cfg["lex_dim"]:
            # regenerated from the seed, never stored: a few hundred MB at v2.1 scale
            g = torch.Generator().manual_seed(cfg["code_seed"])
            codes = torch.randn(n_stems, cfg["lex_dim"], generator=g) / cfg["lex_dim"] ** 0.5
            codes[0] = 0
        self.register_buffer("codes", codes, persistent=False)
        self.query_tower = Tower(cfg, vocab_size, emb, idf_t)
        self.passage_tower = self.query_tower if cfg["shared"] else Tower(cfg, vocab_size, emb, idf_t)
        if head_init is not None:
            for t in {id(self.query_tower): self.query_tower, id(self.passage_tower): self.passage_tower}.values():
                t.head.weight.data.copy_(torch.as_tensor(head_init, dtype=torch.float32))
                t.head.bias.data.zero_()

    @property
    def dim(self) -> int:
        return self.config["out_dim"] + self.config["lex_dim"]

    def max_tokens(self, which: str) -> int:
        """Tokens the tower reads of a "query" or a "passage" (s02's limit, from the config)."""
        return int(self.config[f"max_{which}_tokens"])

    def encode_query(self, ids, lengths):
        return self.query_tower(ids, lengths, self.stems, self.codes)

    def encode_passage(self, ids, lengths):
        return self.passage_tower(ids, lengths, self.stems, self.codes)

    def sparse_parameters(self):
        seen, out = set(), []
        for n, p in self.named_parameters():
            if p.requires_grad and (".emb." in n or ".weights." in n) and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def dense_parameters(self):
        sp = {id(p) for p in self.sparse_parameters()}
        return [p for p in self.parameters() if p.requires_grad and id(p) not in sp]

    # ------------------------------------------------------------ checkpoints
    def _stored(self) -> dict:
        """The state a checkpoint holds: all but a frozen word table (data/embeddings.npy, named
        by config["embeddings"])."""
        sd = self.state_dict()
        if self.config["freeze_emb"] and self.config.get("embeddings"):
            sd = {k: v for k, v in sd.items() if not k.endswith("emb.weight")}
        return sd

    def fingerprint(self, stored: dict | None = None) -> str:
        h = hashlib.sha1(str(self.config.get("embeddings", "")).encode())
        for k, v in sorted((self._stored() if stored is None else stored).items()):
            h.update(k.encode())
            h.update(v.detach().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def checkpoint(self, **extra) -> dict:
        if self.config.get("weight_fn"):
            return self._baked_checkpoint(**extra)
        return {"config": self.config, "state_dict": {k: v.cpu() for k, v in self._stored().items()},
                "fingerprint": self.fingerprint(), **extra}

    @torch.no_grad()
    def _baked_checkpoint(self, **extra) -> dict:
        """weight_fn: the per-word table + wnet(vector) of every word, written into the per-word
        table; the checkpoint is then an ordinary one (weight_fn 0), the same model."""
        sd = {k: v.detach().cpu() for k, v in self._stored().items() if ".wnet." not in k}
        for name, tower in (("query_tower", self.query_tower), ("passage_tower", self.passage_tower)):
            key = f"{name}.weights.weight"
            if tower.wnet is None or key not in sd:
                continue
            emb = tower.emb.weight
            out = torch.empty_like(sd[key])
            for s in range(0, len(out), 65536):
                e = emb[s:s + 65536].to(tower.wnet[0].weight.device).float()
                out[s:s + 65536] = (tower.weights.weight[s:s + 65536] + tower.wnet(e)).cpu()
            sd[key] = out
        cfg = dict(self.config, weight_fn=0)
        return {"config": cfg, "state_dict": sd, "fingerprint": self.fingerprint(sd), **extra}

    @staticmethod
    def holds_embeddings(ckpt: dict) -> bool:
        return any(k.endswith("emb.weight") for k in ckpt["state_dict"])

    @classmethod
    def from_checkpoint(cls, ckpt: dict, embeddings: np.ndarray | None = None) -> "TwoTowerModel":
        """embeddings: the word table, for a checkpoint that does not hold it (frozen vectors)."""
        cfg = dict(ckpt["config"])
        held = cls.holds_embeddings(ckpt)
        if not held and embeddings is None:
            raise ValueError("this checkpoint does not hold its word vectors: pass embeddings")
        m = cls(cfg["vocab_size"], cfg["emb_dim"], cfg, embeddings=None if held else embeddings)
        missing, unexpected = m.load_state_dict(ckpt["state_dict"], strict=False)
        if unexpected or any(not k.endswith("emb.weight") for k in missing) or (missing and held):
            raise ValueError(f"checkpoint does not fit the model: missing {missing}, unexpected {unexpected}")
        m.eval()
        return m
