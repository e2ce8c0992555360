"""The comparison of notebook 04: every method of the kit, measured the same way.

``build_models`` makes (or loads from the checkpoint cache) one model per
method, all on the same data; ``measure`` gives one row of the table;
``write_csv`` saves the table. Latencies depend on the machine; everything
else is reproducible under the fixed seeds.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Mapping, Sequence

from torch import nn

from . import distillation, metrics, pruning
from ._util import atomic_write_bytes
from .checkpoints import get_baseline, get_teacher
from .data import Dataset
from .quantization import quantize_int8
from .training import evaluate, train

COLUMNS = ("model", "accuracy", "params", "nonzero", "macs", "macs_nonzero", "raw_kb",
           "gzip_kb", "sparse_kb", "latency_b1_ms", "latency_b256_ms")


def build_models(data: Dataset, *, seed: int = 0, progress: bool = False) -> dict[str, nn.Module]:
    """Return ``{name: model}`` for every row of the comparison, in table order.

    Uses the cached baseline, teacher and distilled student; the pruned
    variants are fine-tuned here with ``pruning.FINETUNE`` (a few seconds).
    """
    base, _ = get_baseline(data, seed=seed, progress=progress)
    teacher, _ = get_teacher(data, seed=seed, progress=progress)
    student, _ = distillation.get_student(data, seed=seed, teacher=teacher, progress=progress)
    ft = {**pruning.FINETUNE, "seed": seed, "progress": False}

    masked = pruning.magnitude_prune(base, 0.9)
    train(masked, data, **ft)
    removed = pruning.make_permanent(masked)
    structured = pruning.remove_neurons(base, 32)
    train(structured, data, **ft)
    sfp, _ = pruning.soft_filter_prune(base, data, amount=0.75, epochs=8, lr=1e-3, seed=seed)
    gradual, _ = pruning.gradual_prune(base, data, final=0.9, epochs=10, seed=seed)
    struct_kd = pruning.remove_neurons(base, 32)
    distillation.distill(struct_kd, teacher, data, T=4.0, alpha=0.9, epochs=30, seed=seed,
                         progress=False)
    return {
        "dense baseline 784-128-10": base,
        "unstructured 90% of fc1, masked": masked,
        "unstructured 90% of fc1, mask removed": removed,
        "structured 128 -> 32 neurons": structured,
        "soft filter pruning -> 32 neurons": pruning.shrink(sfp),
        "gradual pruning 90% of fc1": gradual,
        "distilled student 784-64-10": student,
        "structured 32 + distillation": struct_kd,
        "int8 baseline": quantize_int8(base),
        "int8 + unstructured 90%": quantize_int8(masked),
        "int8 + structured 32": quantize_int8(structured),
        "teacher CNN (reference)": teacher,
    }


def measure(name: str, model: nn.Module, data: Dataset, *, latency: bool = True) -> dict:
    """One table row: accuracy, parameter and MAC counts, sizes (KB), latencies (ms)."""
    params = metrics.count_parameters(model)
    ops = metrics.macs(model)
    sizes = metrics.file_sizes(model)
    row = {"model": name,
           "accuracy": evaluate(model, data.X_test, data.y_test)["accuracy"],
           "params": params["total"], "nonzero": params["nonzero"],
           "macs": ops["dense"], "macs_nonzero": ops["nonzero"],
           "raw_kb": sizes["raw"] / 1000, "gzip_kb": sizes["gzip"] / 1000,
           "sparse_kb": sizes["sparse"] / 1000}
    if latency:
        row["latency_b1_ms"] = metrics.latency_ms(model, 1)
        row["latency_b256_ms"] = metrics.latency_ms(model, 256)
    return row


def compare(models: Mapping[str, nn.Module], data: Dataset, *, latency: bool = True) -> list[dict]:
    """:func:`measure` for each model, in order."""
    return [measure(name, m, data, latency=latency) for name, m in models.items()]


def format_table(rows: Sequence[Mapping], columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width text table of ``rows`` (floats rounded for reading)."""
    def fmt(key, v):
        if isinstance(v, float):
            return f"{v:.1%}" if key == "accuracy" else (f"{v:.3f}" if "ms" in key else f"{v:.0f}")
        return f"{v:,}" if isinstance(v, int) else str(v)

    cols = [c for c in columns if any(c in r for r in rows)]
    cells = [[fmt(c, r.get(c, "")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(cols, widths)))]
    for row in cells:
        lines.append("  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in
                               enumerate(zip(row, widths))))
    return "\n".join(lines)


def write_csv(rows: Sequence[Mapping], path: str | Path) -> Path:
    """Write ``rows`` to ``path`` as CSV (atomically); return the path."""
    if not rows:
        raise ValueError("rows must hold at least one row, got none")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[c for c in COLUMNS if c in rows[0]],
                            extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_bytes(Path(path), buf.getvalue().encode())
    return Path(path)


def sparsity_curves(base: nn.Module, data: Dataset, amounts: Sequence[float], *,
                    seed: int = 0) -> list[dict]:
    """Accuracy after fine-tuning when fc1 loses each share of its weights,
    unstructured (single weights) vs structured (whole neurons); with the
    structured model's batch-256 latency."""
    ft = {**pruning.FINETUNE, "epochs": 3, "seed": seed, "progress": False}
    rows = []
    n = base.fc1.out_features
    for a in amounts:
        un = pruning.magnitude_prune(base, a)
        train(un, data, **ft)
        st = pruning.remove_neurons(base, max(1, round(n * (1 - a))))
        train(st, data, **ft)
        rows.append({"amount": float(a),
                     "unstructured": evaluate(un, data.X_test, data.y_test)["accuracy"],
                     "structured": evaluate(st, data.X_test, data.y_test)["accuracy"],
                     "structured_latency_ms": metrics.latency_ms(st, 256)})
    return rows
