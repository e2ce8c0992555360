"""helpers: the shared code of the pruning and distillation notebooks.

One module per idea, and each name in one place: call it through its module
(``kit.training.train``, ``kit.pruning.magnitude_prune``), so that the name says
where to read its code.

* ``data``: the datasets, as tensors, and batching.
* ``models``: the networks; ``clone`` and ``make_permanent``.
* ``training``: the one training loop, evaluation, the device.
* ``checkpoints``: the trained-model cache (store and find).
* ``pruning``: every pruning method.
* ``distillation``: the distillation loss, ``distill`` and the bias correction.
* ``quantization``: int8 weights.
* ``metrics``: parameters, MACs, file size, latency.
* ``stats``: mean ± spread over seeds, and the verdict on a difference.
* ``experiments``: the recipes, the cached models (baselines, teachers,
  students), the sweeps behind the sliders and every comparison over seeds.
* ``compare``: the table of notebook 04.
* ``plots`` and ``widgets``: the figures and the sliders.
* ``article``: the source article's code, reproduced to show its errors.
* ``exercises``: the check the exercises' test cells call.
"""
from . import (article, checkpoints, compare, data, distillation, exercises, experiments,
               metrics, models, plots, pruning, quantization, stats, training, widgets)

__version__ = "0.1.0"

__all__ = [
    "article", "checkpoints", "compare", "data", "distillation", "exercises", "experiments",
    "metrics", "models", "plots", "pruning", "quantization", "stats", "training", "widgets",
]
