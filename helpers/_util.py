"""Small shared utilities: argument checks, seeding, the cache folder, atomic writes.

The cache folder is checked once to be writable (else a temporary one serves,
with one warning); a write goes through a temporary file whose name carries
the writer's process id, so that one left by a killed writer can be removed.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import shutil
import stat
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import torch

_REPO_ROOT = Path(__file__).resolve().parent.parent
# A temporary file or folder of a writer that is gone is removed once it is this
# old (seconds); one older than a day is removed whatever its process id says
# (the id may have been reused, or the writer ran on another machine).
_STALE_SECONDS = 600
_ABANDONED_SECONDS = 86400
# ".NAME.PID.xxxxxxxx.tmp" (atomic_write_bytes) and ".download-PID-xxxxxxxx" (data)
_TEMP_NAME = re.compile(r"^\.(?:.+\.(\d+)\.\w+\.tmp|download-(\d+)-\w+)$")
_usable: dict[str, Path] = {}  # cache folder asked for -> folder used (checked once)


def check_int(name: str, value, low: int, high: int | None = None) -> int:
    """Return ``value`` if it is an int in [low, high], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
        high is not None and value > high
    ):
        upper = "inf" if high is None else str(high)
        raise ValueError(f"{name} must be an integer in [{low}, {upper}], got {value!r}")
    return value


def check_float(name: str, value, low: float, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """Return ``float(value)`` if it is a finite number (not a bool or a string)
    in the interval, else raise ValueError."""
    lo_b, hi_b = ("(" if low_open else "["), (")" if high_open else "]")
    upper = "inf" if high is None else f"{high:g}"
    allowed = f"{lo_b}{low:g}, {upper}{hi_b if high is not None else ')'}"
    try:
        if isinstance(value, (bool, str, bytes)):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in {allowed}, got {value!r}") from None
    bad = (v != v or v in (float("inf"), float("-inf")) or (v <= low if low_open else v < low)
           or (high is not None and (v >= high if high_open else v > high)))
    if bad:
        raise ValueError(f"{name} must be in {allowed}, got {value!r}")
    return v


def check_choice(name: str, value, choices) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


SEED_MAX = 2**32 - 1  # torch's CPU generator keeps 32 bits: 2**32 would draw what 0 draws


def check_seed(name: str, value) -> int:
    """Return ``value`` if it is an int in [0, 2**32 - 1], else raise ValueError."""
    return check_int(name, value, 0, SEED_MAX)


def check_bool(name: str, value) -> bool:
    """Return ``value`` if it is True or False, else raise TypeError."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


def check_tensor(name: str, value, dims: tuple[int, ...] | None = None) -> torch.Tensor:
    """Return ``value`` if it is a tensor with one of ``dims`` axes (any if None)
    and at least one row, else raise TypeError or ValueError."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if dims is not None and value.dim() not in dims:
        raise ValueError(f"{name} must have {' or '.join(map(str, dims))} axes, "
                         f"got shape {tuple(value.shape)}")
    if value.dim() and not len(value):
        raise ValueError(f"{name} must hold at least one row, got shape {tuple(value.shape)}")
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Return the tensor ``value`` if every entry is finite, else raise ValueError."""
    bad = int((~torch.isfinite(value)).sum()) if value.is_floating_point() else 0
    if bad:
        raise ValueError(f"{name} must be finite, got {bad} NaN or infinite values")
    return value


def check_labels(name: str, y, num_classes: int, n: int | None = None) -> torch.Tensor:
    """Return ``y`` if it is a 1-D integer tensor (of length ``n``, if given)
    of class indices in [0, num_classes - 1], else raise TypeError or ValueError."""
    check_tensor(name, y, (1,))
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if n is not None and len(y) != n:
        raise ValueError(f"{name} must hold one label per sample ({n}), got {len(y)}")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"{name} must hold class indices in [0, {num_classes - 1}], "
                         f"got values from {lo} to {hi}")
    return y


def check_module(name: str, value) -> torch.nn.Module:
    """Return ``value`` if it is an ``nn.Module``, else raise TypeError."""
    if not isinstance(value, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(value).__name__}")
    return value


def check_model(name: str, model) -> torch.Tensor:
    """Return the first parameter (else buffer) of the ``nn.Module`` ``model``:
    where, and in which dtype, it runs. Raise TypeError or ValueError otherwise."""
    check_module(name, model)
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    if first is not None:
        return first
    raise ValueError(f"{name} must have at least one parameter (they say where it runs), "
                     f"{type(model).__name__} has none")


def import_torchvision():
    """The ``torchvision`` module, imported on first use.

    This is, on purpose, the one import inside a function in ``helpers``. Only
    optional paths need torchvision (full MNIST and Fashion-MNIST, and the
    source article's per-sample loader in notebook 00), and importing it also
    loads ``torch._dynamo``: measured here, 1.5 s and 164 MiB on top of torch
    alone (508 -> 672 MiB), in every notebook kernel, which would take the
    larger notebooks past Binder's 1 GB.
    """
    import torchvision as tv  # deliberately lazy: see the docstring

    return tv


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run a block under ``torch.manual_seed(seed)`` without disturbing the global RNG;
    ``seed`` in [0, 2**32 - 1]."""
    check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def refresh_pruned_weights_(model: torch.nn.Module) -> torch.nn.Module:
    """Recompute every pruned ``weight`` as ``weight_orig * weight_mask`` now.

    ``torch.nn.utils.prune`` refreshes it only at the next forward pass, so
    after ``weight_orig`` or a mask is set by hand, ``.weight`` is stale until
    then. Returns the model.
    """
    for module in model.modules():
        for name, mask in list(module.named_buffers(recurse=False)):
            if name.endswith("_mask"):
                base = name[:-5]
                setattr(module, base, getattr(module, base + "_orig") * mask)
    return model


def cache_dir() -> Path:
    """Folder for cached data and checkpoints, checked once to be writable.

    ``$KIT_CACHE_DIR`` if set; else ``.cache/`` in the kit's checkout (an
    editable install); else ``~/.cache/shrinking-nets``. If that folder cannot
    be written (a read-only share, a file in its place), one RuntimeWarning
    names it and a new temporary folder serves this process instead.
    """
    env = os.environ.get("KIT_CACHE_DIR")
    if env:
        path = Path(env)
    elif (_REPO_ROOT / "pyproject.toml").exists() and os.access(_REPO_ROOT, os.W_OK):
        path = _REPO_ROOT / ".cache"
    else:
        path = Path.home() / ".cache" / "shrinking-nets"
    if str(path) not in _usable:
        _usable[str(path)] = _writable_or_temporary(path)
    return _usable[str(path)]


def _writable_or_temporary(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".probe.{os.getpid()}.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
        return path
    except OSError as exc:
        reason = "a file is in its place" if path.is_file() else exc.strerror or exc
        tmp = Path(tempfile.mkdtemp(prefix="shrinking-nets-cache-"))
        warnings.warn(f"the cache folder {path} cannot be written ({reason}); "
                      f"this session caches in {tmp} instead, which is not kept (set "
                      "KIT_CACHE_DIR to a writable folder to keep trained models)",
                      RuntimeWarning, stacklevel=3)
        return tmp


def usable_cache_file(path: Path) -> bool:
    """True if ``path`` is a regular file inside the cache folder; False if
    there is none. Anything else there (a FIFO, a device, a folder, a link
    out of the cache) is not read: a RuntimeWarning names it, and False."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links; a FIFO is not opened
    except FileNotFoundError:
        return False
    real = Path(os.path.realpath(path))
    if not stat.S_ISREG(mode):
        problem = "it is not a regular file"
    elif Path(os.path.realpath(cache_dir())) not in real.parents:
        problem = f"it links outside the cache, to {real}"
    else:
        return True
    warnings.warn(f"{path.name} in the cache is not used: {problem}", RuntimeWarning,
                  stacklevel=3)
    return False


def _abandoned(pid: int, age: float) -> bool:
    """Whether a temporary file of process ``pid``, ``age`` seconds old, is left over."""
    if age > _ABANDONED_SECONDS:
        return True
    if age < _STALE_SECONDS or os.name == "nt":  # on Windows os.kill(pid, 0) would signal
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove from ``folder`` what killed writers left: temporary files of
    :func:`atomic_write_bytes` and ``.download-*`` folders whose process is
    gone and that are older than ten minutes (or a day, whatever the process).
    Returns the paths removed."""
    removed = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            m = _TEMP_NAME.match(entry.name)
            with contextlib.suppress(OSError):
                if m and _abandoned(int(m[1] or m[2]),
                                    time.time() - entry.stat(follow_symlinks=False).st_mtime):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path)
                    else:
                        os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0o022)  # the only way to read it: set it and put it back
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    A reader never sees a half-written file, and a failure leaves nothing
    behind. The file gets the permissions the umask allows (as ``open`` would
    give it, not the 0600 of a temporary file), so a shared cache stays
    readable; the temporary name, ``.NAME.PID.xxxx.tmp``, carries the writer's
    process id (see :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, then rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())
