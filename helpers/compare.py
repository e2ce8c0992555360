"""The comparison of notebook 04: every method of the kit, measured the same way.

``comparison`` builds every method's model (``experiments.build_models``) for
each seed of ``experiments.SEEDS``, reports test accuracy as mean and standard
deviation over the seeds, and measures size, MACs and latency (``measure``) on
the first seed's models. ``format_table`` and ``write_csv`` present the rows.
The recipes, and the sparsity curves of the same notebook, are in
``experiments``.

Every choice (the epoch kept after fine-tuning) reads the validation split;
each final model is evaluated once on the test split. Latencies depend on the
machine and the thread count (recorded in every row); everything else is
reproducible under the fixed seeds on one machine.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Mapping, Sequence

from torch import nn

from . import metrics
from ._util import atomic_write_bytes, check_int
from .data import Dataset
from .experiments import (LATENCY_BATCHES, LATENCY_THREADS, NAMES, SEEDS, TEACHER, build_models,
                          get_teacher_ensemble)
from .stats import mean_std
from .training import evaluate, logits_of

COLUMNS = ("model", "accuracy_mean", "accuracy_std", "seeds", "params", "nonzero", "macs",
           "macs_nonzero", "raw_kb", "gzip_kb", "sparse_kb", "threads", "latency_b1_ms",
           "latency_b1_iqr_ms", "latency_b256_ms", "latency_b256_iqr_ms")


def _test_accuracy(model: nn.Module, data: Dataset) -> float:
    """The model's accuracy on the test split (its one reading of it)."""
    return evaluate(model, data.X_test, data.y_test)["accuracy"]


def measure(name: str, model: nn.Module, *, latency: bool = True,
            threads: int = LATENCY_THREADS, min_run_time: float = 0.2) -> dict:
    """One table row without accuracy: parameter and MAC counts, file sizes (KB
    = 1000 bytes) and, if ``latency``, the median and interquartile range (ms)
    of a forward pass at each batch size of :data:`LATENCY_BATCHES`, with
    ``threads`` intra-op threads (``threads`` >= 1, recorded in the row)."""
    params = metrics.count_parameters(model)
    ops = metrics.macs(model)
    sizes = metrics.file_sizes(model)
    row = {"model": name, "params": params["total"], "nonzero": params["nonzero"],
           "macs": ops["dense"], "macs_nonzero": ops["nonzero"],
           "raw_kb": sizes["raw"] / 1000, "gzip_kb": sizes["gzip"] / 1000,
           "sparse_kb": sizes["sparse"] / 1000}
    if latency:
        row["threads"] = check_int("threads", threads, 1)
        for b in LATENCY_BATCHES:
            lat = metrics.latency(model, b, threads=threads, min_run_time=min_run_time)
            row[f"latency_b{b}_ms"] = lat["median_ms"]
            row[f"latency_b{b}_iqr_ms"] = lat["iqr_ms"]
    return row


def accuracy_columns(accuracies: Sequence[float]) -> dict:
    """``accuracy_mean``, ``accuracy_std`` (sample std; NaN for a single run) and
    ``seeds`` (how many runs) of per-seed test accuracies (at least one, each
    a finite number)."""
    if isinstance(accuracies, (str, bytes)) or not all(
            isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a)
            for a in accuracies):
        raise ValueError(f"accuracies must be finite numbers, got {accuracies!r}")
    acc = [float(a) for a in accuracies]
    if not acc:
        raise ValueError("accuracies must hold at least one value, got none")
    mean, std = mean_std(acc) if len(acc) > 1 else (acc[0], math.nan)
    return {"accuracy_mean": mean, "accuracy_std": std, "seeds": len(acc)}


def comparison(data: Dataset, *, seeds: Sequence[int] = SEEDS, latency: bool = True,
               threads: int = LATENCY_THREADS) -> tuple[list[dict], dict[str, nn.Module],
                                                        dict[str, list[float]]]:
    """The table of notebook 04: ``(rows, models, accuracies)``.

    Every method of :func:`build_models` is built once per seed of ``seeds``
    (at least two; the first is the one measured) and evaluated once on the
    test split; the teacher (the ensemble of five CNNs) is one model (one run, ``seeds`` = 1
    and ``accuracy_std`` NaN in its row). ``rows`` holds, per method, the
    accuracy's mean and standard deviation over the seeds and, from
    :func:`measure` on the first seed's model, sizes, MACs and latencies.
    ``models`` are the first seed's models (and the teacher); ``accuracies``
    the per-seed test accuracies, for ``stats.verdict``.
    """
    if isinstance(seeds, (str, bytes, int)):
        raise TypeError(f"seeds must be a sequence of at least 2 seeds, got {seeds!r}")
    seeds = [check_int("each item of seeds", s, 0) for s in seeds]
    if len(seeds) < 2:
        raise ValueError(f"seeds must hold at least 2 seeds (mean ± std), got {seeds}")
    teacher, _ = get_teacher_ensemble(data)
    logits = logits_of(teacher, data.X_train)
    accuracies = {name: [] for name in NAMES}
    models = {}
    for s in seeds:
        built = build_models(data, seed=s, teacher=teacher, teacher_logits=logits)
        for name, m in built.items():
            accuracies[name].append(_test_accuracy(m, data))
        if not models:
            models = built
    models[TEACHER] = teacher
    accuracies[TEACHER] = [_test_accuracy(teacher, data)]
    rows = [{"model": name, **accuracy_columns(accuracies[name]),
             **{k: v for k, v in measure(name, m, latency=latency, threads=threads).items()
                if k != "model"}} for name, m in models.items()]
    return rows, models, accuracies


def format_table(rows: Sequence[Mapping], columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width text table of ``rows`` (floats rounded for reading).

    ``accuracy_mean`` and ``accuracy_std`` are shown as one column,
    ``accuracy`` ("95.1% ± 0.3": mean ± std over seeds, in points; "(1 run)"
    where there is one), and each latency as its median with the interquartile
    range ("0.312 (IQR 0.004)", ms). ``rows``: at least one; ``columns``: a
    sequence of column names.
    """
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    if isinstance(columns, str):
        raise TypeError(f"columns must be a sequence of column names, got {columns!r}")
    def fmt(key, r):
        v = r.get(key, "")
        if key == "accuracy":
            m, s = r["accuracy_mean"], r["accuracy_std"]
            return f"{m:.1%}" + (" (1 run)" if math.isnan(s) else f" ± {100 * s:.1f}")
        if key.startswith("latency_") and key.endswith("_ms") and "iqr" not in key:
            iqr = r.get(key.replace("_ms", "_iqr_ms"))
            return f"{v:.3f}" + ("" if iqr is None else f" (IQR {iqr:.3f})")
        if isinstance(v, float):
            return f"{v:.1%}" if key.startswith("accuracy") else (
                f"{v:.3f}" if "ms" in key else f"{v:.0f}")
        return f"{v:,}" if isinstance(v, int) else str(v)

    cols = []
    for c in columns:
        if c == "accuracy_mean" and any(c in r for r in rows):
            cols.append("accuracy")
        elif c in ("accuracy_std", "seeds") or c.endswith("_iqr_ms"):
            continue  # shown inside the accuracy and latency cells
        elif any(c in r for r in rows):
            cols.append(c)
    cells = [[fmt(c, r) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(cols, widths)))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                               enumerate(zip(row, widths))))
    return "\n".join(lines)


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` as CSV (atomically; the columns of
    :data:`COLUMNS` present in the first row, a NaN written as an empty
    cell); return the path."""
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[c for c in COLUMNS if c in rows[0]],
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)
