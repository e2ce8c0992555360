"""Peak memory of each notebook's kernel: does the kit fit Binder's 1 GB?

Run as ``python benchmarks/bench_memory.py [--warm] [NAME ...]`` (names or
prefixes such as ``03`` pick notebooks; default: all). Each notebook in
``notebooks/`` runs top to bottom in a fresh Python kernel (nbclient), by
default with an empty, temporary checkpoint cache (cold: every model the
notebook needs is trained, the worst case); ``--warm`` shares one cache
across the notebooks, run in order. The peak resident memory of the kernel
process (``VmHWM`` in ``/proc/<pid>/status``, Linux only) is read after its
last cell. Also reported: the peak of a bare kernel that only imports torch
and the kit, which is the floor. Results are printed and written to
``benchmarks/results/bench_memory.json`` (atomically).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from helpers._util import atomic_write_bytes  # noqa: E402

LIMIT_MB = 1024  # Binder's guaranteed memory


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set size (VmHWM) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found (Linux /proc needed)")


def run(nb: nbformat.NotebookNode, cwd: Path) -> tuple[float, float]:
    """Execute ``nb`` in a fresh kernel; return (peak RSS in MiB, seconds)."""
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    start = time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.process.pid
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        peak = peak_rss_mb(pid)
    return peak, time.perf_counter() - start


def floor_notebook() -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "%matplotlib inline\nimport torch\nimport helpers as kit")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm", action="store_true",
                        help="share one cache across notebooks (run in order)")
    parser.add_argument("only", nargs="*", help="notebook names to run (default: all)")
    args = parser.parse_args(argv)
    nb_dir = ROOT / "notebooks"
    results = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                           "cpu_count": os.cpu_count(), "platform": platform.platform()},
               "cache": "warm" if args.warm else "cold", "limit_mb": LIMIT_MB, "notebooks": {}}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        os.environ["KIT_CACHE_DIR"] = str(Path(tmp) / "shared")
        peak, secs = run(floor_notebook(), nb_dir)
        results["floor_mb"] = round(peak, 1)
        print(f"{'kernel importing torch and the kit':40s} {peak:7.0f} MiB")
        for path in sorted(nb_dir.glob("*.ipynb")):
            if args.only and not any(path.name.startswith(o) for o in args.only):
                continue
            if not args.warm:
                os.environ["KIT_CACHE_DIR"] = str(Path(tmp) / path.stem)
            nb = nbformat.read(path, as_version=4)
            peak, secs = run(nb, nb_dir)
            results["notebooks"][path.name] = {"peak_mb": round(peak, 1),
                                               "seconds": round(secs, 1)}
            flag = "ok" if peak <= LIMIT_MB else "OVER 1 GB"
            print(f"{path.name:40s} {peak:7.0f} MiB  {secs:6.1f} s  {flag}")
    worst = max(v["peak_mb"] for v in results["notebooks"].values())
    results["max_peak_mb"] = worst
    print(f"largest peak: {worst:.0f} MiB (limit {LIMIT_MB} MiB)")
    out = ROOT / "benchmarks" / "results" / "bench_memory.json"
    atomic_write_bytes(out, (json.dumps(results, indent=2) + "\n").encode())
    print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
