"""helpers: the shared code of the pruning and distillation notebooks.

One module per idea: ``data`` (datasets as tensors), ``models`` (the networks),
``training`` (train / evaluate), ``checkpoints`` (the trained-model cache),
``metrics`` (size and speed), ``plots`` (figures), ``pruning`` (every pruning
method), ``distillation`` (teacher and student), ``quantization`` (int8
weights), ``compare`` (the table of notebook 04), ``widgets`` (the sliders), ``article`` (the source article's code,
reproduced to show its errors), ``exercises`` (self-checks), ``experiments``
(the headline comparisons, repeated over seeds), ``stats`` (mean ± spread).
"""
from . import (article, checkpoints, compare, data, distillation, exercises, experiments,
               metrics, models, plots, pruning, quantization, stats, training, widgets)
from ._util import get_device
from .checkpoints import (get_baseline, get_baselines, get_teacher, get_teacher_ensemble,
                          get_teachers, load_or_train)
from .checkpoints import BASELINE_RECIPE, SEEDS, TEACHER_RECIPE
from .data import DATASETS, Dataset, DatasetUnavailableError, batches, load_dataset
from .exercises import check
from .models import MLP, Ensemble, SmallCNN, baseline_mlp, mlp, small_cnn
from .training import evaluate, train

__version__ = "0.1.0"

__all__ = [
    "article", "checkpoints", "compare", "data", "distillation", "exercises", "experiments",
    "metrics", "stats",
    "models", "plots", "pruning", "quantization", "training", "widgets",
    "get_device", "get_baseline", "get_baselines", "get_teacher", "get_teacher_ensemble",
    "get_teachers", "load_or_train",
    "BASELINE_RECIPE", "SEEDS",
    "TEACHER_RECIPE", "DATASETS", "Dataset", "DatasetUnavailableError", "batches",
    "load_dataset", "check", "MLP", "Ensemble", "SmallCNN", "baseline_mlp", "mlp", "small_cnn",
    "evaluate", "train",
]
