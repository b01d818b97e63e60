"""Command-line pieces every script shares: --data-dir, --device, threads, W&B mode, timing."""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# Must be set before chromadb is imported anywhere: no phoning home, no model downloads.
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class Parser(argparse.ArgumentParser):
    """argparse, but a bad option is one line that names it (argparse's own message), not usage too."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The docstring as written (its examples keep their lines), and each option's default."""


def parser(doc: str) -> argparse.ArgumentParser:
    p = Parser(description=doc, formatter_class=HelpFormatter)
    p.add_argument("--data-dir", default="data", type=Path, help="folder the stages share")
    return p


# ------------------------------------------------------------------ numeric option types
# Checked when parsed: argparse names the option in its message ("argument --batch-size: must be
# an integer >= 1, not 0"), so a nonsense setting stops at once, never half-way through the work.
def _number(kind, s: str):
    try:
        v = kind(s)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, not {s!r}")
    if kind is float and v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {s!r}")
    return v


def int_range(lo: int | None = None, hi: int | None = None):
    """An integer in [lo, hi] (either end open when None)."""
    def parse(s):
        v = _number(int, s)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"from {lo} to {hi:,}"
            raise argparse.ArgumentTypeError(f"must be an integer {rng}, not {s}")
        return v
    parse.__name__ = "integer"  # what argparse calls the type in its messages
    return parse


positive_int = int_range(1)          # counts and sizes
nonneg_int = int_range(0)            # seeds, ranks to skip


def nonneg_int_zero_means(meaning: str):
    """An integer >= 0 where 0 means `meaning` ("off", "auto: ..."); say so in the option's help."""
    parse = int_range(0)
    parse.zero_means = meaning
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False):
    """A finite number in the range (open or closed at each end)."""
    def parse(s):
        v = _number(float, s)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and (v > hi or (hi_open and v == hi))):
            bits = ([f"{'>' if lo_open else '>='} {lo:g}"] if lo is not None else []) + \
                   ([f"{'<' if hi_open else '<='} {hi:g}"] if hi is not None else [])
            raise argparse.ArgumentTypeError(f"must be a number {' and '.join(bits)}, not {s}")
        return v
    parse.__name__ = "number"
    return parse


positive_float = float_range(0, lo_open=True)   # rates, temperatures, scales
nonneg_float = float_range(0)                   # margins
fraction = float_range(0, 1)                    # shares in [0, 1]


def add_device(p: argparse.ArgumentParser):
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    p.add_argument("--threads", type=positive_int, default=1,
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
        from .artifacts import BadSetting
        raise BadSetting("--device cuda asked for, but torch sees no GPU: use --device cpu")
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


def add_train(p: argparse.ArgumentParser, epochs: int, lr: float, lr_emb: float | None = None):
    """Training settings shared by s04 and s07."""
    p.add_argument("--epochs", type=positive_int, default=epochs)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=lr, help="learning rate of the dense layers")
    p.add_argument("--lr-emb", type=positive_float, default=lr if lr_emb is None else lr_emb,
                   help="learning rate of word weights (and word vectors with --train-emb)")
    p.add_argument("--distill", type=nonneg_float, default=2.0,
                   help="weight of the teacher's embeddings in the loss (0: labels only, no teacher)")
    p.add_argument("--distill-pairs", type=positive_int, default=10_000,
                   help="training pairs the teacher embeds (at most; cached in data/teacher/)")
    p.add_argument("--distill-passages", type=nonneg_int, default=10_000,
                   help="more training-split passages the teacher embeds (at most; cached in data/teacher/), "
                        "each pulled towards its target like a positive, without a label (0: none)")
    p.add_argument("--loss", default="triplet", choices=["triplet", "inbatch"],
                   help="triplet: margin between the positive and the triplet's negative (default); "
                        "inbatch: softmax over every passage in the batch")
    p.add_argument("--margin", type=nonneg_float, default=0.2, help="triplet loss margin")
    p.add_argument("--val-pool", type=positive_int, default=200_000,
                   help="validation ranks against at most this many pool passages (all, if fewer)")
    p.add_argument("--patience", type=nonneg_int_zero_means("never stop early"), default=0, help="stop after this many epochs without improvement (0: never)")
    p.add_argument("--seed", type=nonneg_int, default=0)
