"""Command-line pieces every script shares: --data-dir, --device, threads, W&B mode, timing."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# Must be set before chromadb is imported anywhere: no phoning home, no model downloads.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def parser(doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data-dir", default="data", type=Path, help="folder the stages share")
    return p


def add_device(p: argparse.ArgumentParser):
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch; 1 holds up best on a busy 2-core machine")


def add_wandb(p: argparse.ArgumentParser):
    p.add_argument("--wandb", default="offline", choices=["online", "offline", "disabled"],
                   help="W&B mode; offline needs no account and never prompts")
    p.add_argument("--wandb-project", default="msmarco-search")


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity where the OS has one (Linux), else all."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def setup_torch(args):
    """Pick the device and thread count; returns a torch.device."""
    import torch
    torch.set_num_threads(max(1, args.threads))
    if args.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from .artifacts import StageError
        raise StageError("--device cuda asked for, but torch sees no GPU: use --device cpu")
    return dev


class Timer:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def s(self) -> float:
        return time.perf_counter() - self.t0


def done(msg: str, timer: Timer | None = None):
    """Every script ends with one line saying what it wrote."""
    print(f"wrote {msg}" + (f" ({timer.s:.1f} s)" if timer else ""), flush=True)


def add_train(p: argparse.ArgumentParser, epochs: int, lr: float):
    """Training settings shared by s04 and s07."""
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=lr, help="learning rate of the dense layers")
    p.add_argument("--lr-emb", type=float, default=lr, help="learning rate of word vectors and word weights")
    p.add_argument("--loss", default="inbatch", choices=["inbatch", "triplet"],
                   help="in-batch negatives (softmax over the batch) or the original triplet margin")
    p.add_argument("--margin", type=float, default=0.2, help="triplet loss margin")
    p.add_argument("--max-len", type=int, default=256, help="passage tokens the model reads")
    p.add_argument("--val-pool", type=int, default=200_000,
                   help="validation ranks against at most this many pool passages (all, if fewer)")
    p.add_argument("--patience", type=int, default=0, help="stop after this many epochs without improvement (0: never)")
    p.add_argument("--seed", type=int, default=0)
