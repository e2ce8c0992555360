"""One training epoch: the kit's index batches against the article's DataLoader.

Run as ``python benchmarks/bench_training.py [--threads N] [--quick]``.
Both sides train the kit's baseline MLP (784-128-10) on the CPU with the
article's optimiser (SGD, lr 0.01), batch 64, through the same loop, for one
epoch of 60,000 MNIST-shaped images (the 3,500 embedded training digits,
tiled). Only where the batches come from differs:

* article: ``helpers.article.per_sample_loader``, a ``DataLoader`` that turns
  each uint8 image into a tensor through PIL and ``ToTensor`` and collates 64
  of them, as ``torchvision.datasets.MNIST(transform=ToTensor())`` does;
* kit: ``helpers.data.batches``, shuffled index slices of tensors already in
  memory, which ``helpers.training.train`` iterates.

The matmul bound is the time of the five GEMMs of one step (``GEMMS``, at
their exact shapes) times the steps of the epoch: what an epoch would take if
it did nothing else.

Each figure is the median of ``torch.utils.benchmark.Timer.blocked_autorange``
(its first call is a warm-up), printed as a markdown table and written to
``benchmarks/results/bench_training.json``. ``--quick`` (3,500 images, short
timings) checks the script; its figures are not for the README.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

from helpers.article import per_sample_loader
from helpers.data import batches, load_dataset
from helpers.models import baseline_mlp

RESULTS = Path(__file__).resolve().parent / "results" / "bench_training.json"
BATCH, LR, SEED = 64, 0.01, 0  # the article's batch size and SGD learning rate
SAMPLES, MIN_RUN_S = 60_000, 5.0  # MNIST's training set; seconds of runs per figure
QUICK_SAMPLES, QUICK_MIN_RUN_S = 3_500, 0.05
# (m, k, n) of each (m x k) @ (k x n) GEMM in one step at batch 64; fc1 needs
# no input gradient.
GEMMS = ((BATCH, 784, 128),  # fc1 forward       x @ W1^T
         (BATCH, 128, 10),   # fc2 forward       h @ W2^T
         (10, BATCH, 128),   # fc2 weight grad   g2^T @ h
         (BATCH, 10, 128),   # fc2 input grad    g2 @ W2
         (128, BATCH, 784))  # fc1 weight grad   g1^T @ x


def median_s(fn, threads: int, min_run_s: float) -> float:
    """Median seconds of one ``fn()`` (``Timer.blocked_autorange`` on ``threads``)."""
    timer = Timer("fn()", globals={"fn": fn}, num_threads=threads)  # warms up, then times
    return timer.blocked_autorange(min_run_time=min_run_s).median


def epoch_s(make_batches, threads: int, min_run_s: float) -> float:
    """Median seconds of one epoch of the article's loop over ``make_batches()``."""
    model = baseline_mlp(seed=SEED)
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def epoch():
        for xb, yb in make_batches():
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()

    return median_s(epoch, threads, min_run_s)


def step_gemms_s(threads: int, min_run_s: float) -> float:
    """Median seconds of the five GEMMs of one step, run back to back."""
    pairs = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in GEMMS]  # values: any
    return median_s(lambda: [torch.mm(a, b) for a, b in pairs], threads, min_run_s)


def measure(samples: int, threads: int, min_run_s: float) -> dict:
    """The two epochs and the matmul bound, in seconds."""
    data = load_dataset("embedded")
    reps = math.ceil(samples / len(data.X_train))
    X = data.X_train.repeat(reps, 1, 1, 1)[:samples].contiguous()  # (N, 1, 28, 28) float32
    y = data.y_train.repeat(reps)[:samples].contiguous()
    pixels = (X[:, 0] * data.std + data.mean).mul(255).round().to(torch.uint8)  # (N, 28, 28)
    loader = per_sample_loader(pixels, y, batch_size=BATCH, shuffle=True, seed=SEED)
    gen = torch.Generator().manual_seed(SEED)
    steps = math.ceil(samples / BATCH)  # every step counted as a full batch
    step_s = step_gemms_s(threads, min_run_s)
    return {"samples": samples, "batch_size": BATCH, "steps": steps,
            "article_epoch_s": epoch_s(lambda: loader, threads, min_run_s),
            "kit_epoch_s": epoch_s(lambda: batches(X, y, BATCH, shuffle=True, generator=gen),
                                   threads, min_run_s),
            "step_gemms_s": step_s, "matmul_bound_s": step_s * steps}


def table(r: dict) -> str:
    """The figures of ``r`` as a markdown table, each against the kit and the bound."""
    rows = [("article epoch: per-sample DataLoader (PIL + ToTensor)", r["article_epoch_s"]),
            ("kit epoch: index batches of in-memory tensors", r["kit_epoch_s"]),
            (f"matmul bound: 5 GEMMs x {r['steps']} steps", r["matmul_bound_s"])]
    lines = ["| what | ms | / kit epoch | / matmul bound |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {what} | {s * 1e3:.1f} | {s / r['kit_epoch_s']:.2f}x "
              f"| {s / r['matmul_bound_s']:.2f}x |" for what, s in rows]
    return "\n".join(lines)


def write_json(results: dict, path: Path) -> None:
    """Write ``results`` to ``path`` through a temporary file and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     suffix=".tmp", delete=False) as fh:
        fh.write(json.dumps(results, indent=2) + "\n")
    os.chmod(fh.name, 0o644)  # a temporary file is 0600; this one is shared
    os.replace(fh.name, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(),
                        help="torch threads while timing (default: torch's own choice)")
    parser.add_argument("--quick", action="store_true", help="3,500 images, short timings; "
                        "checks the script, writes nothing unless --out is given")
    parser.add_argument("--out", type=Path, help=f"results file (default: {RESULTS})")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    samples, min_run_s = (QUICK_SAMPLES, QUICK_MIN_RUN_S) if args.quick else (SAMPLES, MIN_RUN_S)
    machine = {"torch": torch.__version__, "python": platform.python_version(),
               "threads": args.threads, "cpu_count": os.cpu_count(),
               "platform": platform.platform()}
    results = {"machine": machine, "quick": args.quick, "min_run_time_s": min_run_s,
               **measure(samples, args.threads, min_run_s)}
    article, kit, bound = (results[k] for k in ("article_epoch_s", "kit_epoch_s",
                                                "matmul_bound_s"))
    print(f"One epoch, {samples:,} images, batch {BATCH}, SGD lr {LR}, "
          f"{args.threads} thread(s), torch {torch.__version__}\n")
    print(table(results))
    print(f"\nkit epoch = {kit * 1e3:.1f} ms, matmul bound = {bound * 1e3:.1f} ms, ratio "
          f"{kit / bound:.2f}x; article epoch / kit epoch = {article / kit:.1f}x")
    out = args.out or (None if args.quick else RESULTS)
    if out is not None:
        write_json(results, out)
        print(f"written: {out}")


if __name__ == "__main__":
    main()
