"""The comparison of notebook 04: every method of the kit, measured the same way.

``build_models`` makes one model per method for one seed, all on the same data
(the baselines, teacher and students, and the pruned variants fine-tuned
from them, all through the checkpoint cache). ``comparison`` builds them for every
seed of ``checkpoints.SEEDS``, reports test accuracy as mean and standard
deviation over the seeds, and measures size, MACs and latency on the seed-0
models. ``format_table`` and ``write_csv`` present the rows; ``sparsity_curves``
compares unstructured and structured pruning at several amounts.

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

import torch
from torch import nn

from . import distillation, metrics, pruning
from ._util import atomic_write_bytes, check_int, refresh_pruned_weights_
from .checkpoints import SEEDS, get_baseline, get_teacher_ensemble, load_or_train, model_fingerprint
from .data import Dataset
from .experiments import FINETUNE, GRADUAL, PRUNE_AMOUNT, SFP, STRUCTURED_KEEP
from .quantization import quantize_int8
from .stats import mean_std
from .training import evaluate, logits_of, train

from .experiments import KD  # T and alpha chosen on validation in notebook 03
# Latency: batch 1 (one request; mostly Python overhead on a CPU) and batch 256
# (enough arithmetic for the matrix multiply to dominate).
LATENCY_BATCHES = (1, 256)
# Latency threads: one intra-op thread, so that the figures do not depend on
# how many cores the machine has or how busy the others are.
LATENCY_THREADS = 1
# Sparsity curves: fine-tuning epochs at each amount (FINETUNE's rate and
# keep_best), fewer than FINETUNE's 5 to keep the sweep within seconds.
CURVE_EPOCHS = 3

TEACHER = "teacher: 5 CNNs together (reference)"
NAMES = ("dense baseline 784-128-10", "unstructured 90% of fc1, masked",
         "unstructured 90% of fc1, mask removed", "structured 128 -> 32 neurons",
         "soft filter pruning -> 32 neurons", "gradual pruning 90% of fc1",
         "distilled student 784-64-10", "structured 32 + distillation", "int8 baseline",
         "int8 + unstructured 90%", "int8 + structured 32", TEACHER)

COLUMNS = ("model", "accuracy_mean", "accuracy_std", "seeds", "params", "nonzero", "macs",
           "macs_nonzero", "raw_kb", "gzip_kb", "sparse_kb", "threads", "latency_b1_ms",
           "latency_b1_iqr_ms", "latency_b256_ms", "latency_b256_iqr_ms")


def build_models(data: Dataset, *, seed: int = 0, teacher: nn.Module | None = None,
                 teacher_logits: torch.Tensor | None = None) -> dict[str, nn.Module]:
    """Return ``{name: model}`` for every row of the comparison but the teacher,
    for one ``seed``, in table order (:data:`NAMES`).

    The baseline of ``seed`` and the distilled student (from ``teacher``,
    default the kit's teacher ensemble) come from the cache; the pruned variants are
    fine-tuned from the baseline (and cached too): :data:`experiments.FINETUNE` after
    one-shot pruning, :data:`experiments.SFP` and :data:`experiments.GRADUAL`
    for soft and gradual pruning. "structured 32 + distillation" gets exactly
    the budget of "structured 128 -> 32 neurons" (FINETUNE: same epochs, rate,
    batches, keep_best on validation); only its loss is the distillation loss
    (:data:`KD`). ``teacher_logits`` (the teacher's logits on the training
    split) may be passed to skip recomputing them.
    """
    check_int("seed", seed, 0)
    if teacher is None:
        teacher, _ = get_teacher_ensemble(data)
    base, _ = get_baseline(data, seed=seed)
    student, _ = distillation.get_student(data, seed=seed, teacher=teacher, **KD)
    ft = {**FINETUNE, "seed": seed, "progress": False}
    # distill trains with Adam itself (FINETUNE's optimizer); the rest of FINETUNE as is
    kd_ft = {k: v for k, v in ft.items() if k != "optimizer"}

    def finetuned(model):
        train(model, data, **ft)

    def copied(make):  # a method that returns a new model: copy its weights in
        return lambda model: model.load_state_dict(make().state_dict())

    def sfp():
        return pruning.shrink(pruning.soft_filter_prune(base, data, seed=seed, **SFP)[0])

    def gradual():
        return pruning.gradual_prune(base, data, seed=seed, **GRADUAL)[0]

    def distilled(model):
        distillation.distill(model, teacher, data, logits=teacher_logits, **KD, **kd_ft)

    made = {}
    for key, build, fit, recipe in (
            ("masked", lambda: pruning.magnitude_prune(base, PRUNE_AMOUNT), finetuned,
             {"amount": PRUNE_AMOUNT, **FINETUNE}),
            ("structured", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP), finetuned,
             {"keep": STRUCTURED_KEEP, **FINETUNE}),
            ("sfp", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP), copied(sfp), SFP),
            ("gradual", lambda: pruning.magnitude_prune(base, GRADUAL["final"]),
             copied(gradual), GRADUAL),
            ("structured-kd", lambda: pruning.remove_neurons(base, STRUCTURED_KEEP), distilled,
             {"keep": STRUCTURED_KEEP, **FINETUNE, **KD})):
        made[key] = _cached(f"compare-{key}", build, fit, data=data, base=base, recipe=recipe,
                            seed=seed, teacher=teacher if key == "structured-kd" else None)
    masked, structured = made["masked"], made["structured"]
    return dict(zip(NAMES, (
        base, masked, pruning.make_permanent(masked), structured, made["sfp"],
        made["gradual"], student, made["structured-kd"], quantize_int8(base),
        quantize_int8(masked), quantize_int8(structured))))


def _cached(name: str, build, fit, *, data: Dataset, base: nn.Module, recipe: dict, seed: int,
            teacher: nn.Module | None) -> nn.Module:
    """``build()`` trained by ``fit(model)`` (in place), through the checkpoint
    cache, keyed on the data, the baseline's and teacher's weights, the recipe
    and the seed."""
    config = {"data": data.fingerprint, "base": model_fingerprint(base), "recipe": recipe,
              "seed": seed, "teacher": None if teacher is None else model_fingerprint(teacher)}

    def fit_record(model):
        fit(model)
        return {}

    model, _ = load_or_train(name, config, build, fit_record,
                             device=next(base.parameters()).device)
    return refresh_pruned_weights_(model)  # a loaded mask is multiplied in now


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
    ``seeds`` (how many runs) of per-seed test accuracies (at least one)."""
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
    seeds = list(seeds)
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
    range ("0.312 (IQR 0.004)", ms).
    """
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


def sparsity_curves(base: nn.Module, data: Dataset, amounts: Sequence[float], *,
                    seed: int = 0, threads: int = LATENCY_THREADS,
                    min_run_time: float = 0.2) -> list[dict]:
    """Unstructured vs structured pruning of fc1 at each share in ``amounts``.

    For each amount: ``unstructured`` and ``structured``, the test accuracy
    after fine-tuning (:data:`CURVE_EPOCHS` epochs at FINETUNE's rate, the
    epoch kept chosen on validation) of fc1 pruned by single weights (mask
    removed, still dense) and by whole neurons (a smaller network); and
    ``unstructured_latency_ms`` / ``structured_latency_ms`` with their
    ``..._iqr_ms``, the batch-256 forward pass of each at ``threads`` threads.
    One seed (``seed``): a curve, not a comparison over seeds.
    """
    ft = {**FINETUNE, "epochs": CURVE_EPOCHS, "seed": seed, "progress": False}
    rows = []
    n = base.fc1.out_features
    for a in amounts:
        un = pruning.magnitude_prune(base, a)
        train(un, data, **ft)
        un = pruning.make_permanent(un)
        st = pruning.remove_neurons(base, max(1, round(n * (1 - a))))
        train(st, data, **ft)
        row = {"amount": float(a), "unstructured": _test_accuracy(un, data),
               "structured": _test_accuracy(st, data), "threads": threads}
        for key, m in (("unstructured", un), ("structured", st)):
            lat = metrics.latency(m, LATENCY_BATCHES[-1], threads=threads,
                                  min_run_time=min_run_time)
            row[f"{key}_latency_ms"] = lat["median_ms"]
            row[f"{key}_latency_iqr_ms"] = lat["iqr_ms"]
        rows.append(row)
    return rows
