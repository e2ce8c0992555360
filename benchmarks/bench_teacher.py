"""How the teacher's recipe was chosen: candidate recipes compared on validation.

Run as ``python benchmarks/bench_teacher.py [--seeds N]`` (about 45 s per
recipe and 5 seeds on 2 CPU cores). Each candidate recipe trains the kit's
small CNN on the embedded training split for every seed; the recipes are
ranked by mean *validation* accuracy (the choice), and only then is each
recipe's test accuracy printed (the report). The kit's ``TEACHER_RECIPE`` is
the first row. Results go to ``benchmarks/results/bench_teacher.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers._util import atomic_write_bytes  # noqa: E402
from helpers.experiments import TEACHER_RECIPE  # noqa: E402
from helpers.data import load_dataset  # noqa: E402
from helpers.models import small_cnn  # noqa: E402
from helpers.training import evaluate, train  # noqa: E402

# The candidates: the kit's first-edition recipe (constant 1e-3), the same with
# a cosine decay, and the chosen one (cosine from 2e-3).
CANDIDATES = {
    "constant lr 1e-3": {**TEACHER_RECIPE, "lr": 1e-3, "schedule": None},
    "cosine from 1e-3": {**TEACHER_RECIPE, "lr": 1e-3, "schedule": "cosine"},
    "cosine from 2e-3 (TEACHER_RECIPE)": dict(TEACHER_RECIPE),
}


def run(recipe: dict, seeds: range, data) -> dict:
    val, test, seconds = [], [], []
    for s in seeds:
        net = small_cnn(seed=s)
        start = time.perf_counter()
        history = train(net, data, seed=s, **recipe)
        seconds.append(time.perf_counter() - start)
        val.append(history[-1]["val_accuracy"])
        test.append(evaluate(net, data.X_test, data.y_test)["accuracy"])
    return {"recipe": recipe, "val": val, "test": test, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds per recipe (>= 2)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error(f"--seeds must be >= 2, got {args.seeds}")
    data = load_dataset("embedded")
    results = {name: run(r, range(args.seeds), data) for name, r in CANDIDATES.items()}
    ranked = sorted(results, key=lambda n: -statistics.fmean(results[n]["val"]))
    print(f"{'recipe':36s} {'validation':>16s} {'test':>16s} {'s/teacher':>10s}")
    for name in ranked:
        r = results[name]
        cells = [f"{100 * statistics.fmean(r[k]):.2f} ± {100 * statistics.stdev(r[k]):.2f}"
                 for k in ("val", "test")]
        print(f"{name:36s} {cells[0]:>16s} {cells[1]:>16s} "
              f"{statistics.median(r['seconds']):10.1f}")
    out = {"seeds": args.seeds, "threads": torch.get_num_threads(),
           "torch": torch.__version__, "platform": platform.platform(),
           "chosen_on_validation": ranked[0], "results": results}
    path = ROOT / "benchmarks" / "results" / "bench_teacher.json"
    atomic_write_bytes(path, json.dumps(out, indent=1).encode())
    print(f"written: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
