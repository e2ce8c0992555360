"""Interactive explorers: thin ipywidgets layers over pure functions.

Each explorer keeps its current result in ``.row`` and its figure in
``.figure``, so tests can set a slider's value and check what changed without
a browser. Sliders that trigger work use ``continuous_update=False`` (work
happens on release); the temperature slider, which only redraws, follows the
mouse.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import ipywidgets as widgets
from IPython.display import display
from matplotlib.figure import Figure
from torch import nn

from . import plots
from ._util import check_float, check_int
from .data import Dataset
from .distillation import entropy, soft_targets
from .experiments import AMOUNT_FINETUNE_EPOCHS, FINETUNE, NEAR_ZERO, amount_point, nearest_row
from .pruning import _check_leaves_weights, _layers
from .training import logits_of


class _Explorer(widgets.VBox):
    """Controls on top, a one-line summary, then the figure."""

    figure: Figure | None = None
    row: Mapping | None = None

    def _assemble(self, *controls: widgets.Widget) -> None:
        """Lay out ``controls`` in a row, the summary and the figure below;
        redraw whenever a control's value changes; draw once now."""
        self.summary = widgets.HTML()
        self.out = widgets.Output()
        super().__init__([widgets.HBox(list(controls)), self.summary, self.out])
        for control in controls:
            control.observe(self.update, names="value")
        self.update()

    def update(self, change=None) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        # What a saved notebook shows where no widget can render (GitHub, nbviewer).
        return (f"{type(self).__name__} (interactive: run the notebook to move the slider; "
                "the figure below shows its starting position)")

    def _show(self, fig: Figure, summary: str) -> None:
        self.figure = fig
        self.summary.value = summary
        with self.out:
            self.out.clear_output(wait=True)
            display(fig)


class LambdaExplorer(_Explorer):
    """Choose L1 or L2 and λ (log slider); see fc1's histogram, accuracy and
    near-zero share, from precomputed ``experiments.regularisation_sweep`` rows."""

    def __init__(self, sweeps: Mapping[str, Sequence[Mapping]], *, reference=None,
                 near_zero: float = NEAR_ZERO):
        if not isinstance(sweeps, Mapping) or not sweeps or any(
                k not in ("l1", "l2") or not rows for k, rows in sweeps.items()):
            raise ValueError("sweeps must map 'l1'/'l2' to non-empty lists of rows")
        lams = [r.get("lam") if isinstance(r, Mapping) else r for rows in sweeps.values()
                for r in rows]
        bad = [v for v in lams if isinstance(v, bool) or not isinstance(v, (int, float))
               or not (math.isfinite(v) and v > 0)]
        if bad:  # each λ is a stop of a log slider
            raise ValueError(f"sweeps' rows must each have a finite lam > 0, got {bad[0]!r}")
        check_float("near_zero", near_zero, 0.0)
        self.sweeps, self.reference, self.near_zero = sweeps, reference, near_zero
        lams = sorted(set(lams))
        exps = [math.log10(v) for v in lams]
        step = min((b - a for a, b in zip(exps, exps[1:])), default=1.0)
        self.penalty = widgets.ToggleButtons(
            options=[(k.upper(), k) for k in sweeps], description="penalty")
        self.lam = widgets.FloatLogSlider(
            value=lams[len(lams) // 2], base=10, min=exps[0], max=exps[-1], step=step,
            description="λ", readout_format=".0e", continuous_update=False)
        self._assemble(self.penalty, self.lam)

    def update(self, change=None) -> None:
        rows = self.sweeps[self.penalty.value]
        self.row = nearest_row(rows, "lam", self.lam.value, log=True)
        fig = plots.regularisation_view(rows, self.row["lam"], label=self.penalty.value.upper(),
                                        near_zero=self.near_zero, reference=self.reference)
        self._show(fig, f"<b>{self.penalty.value.upper()}, λ = {self.row['lam']:.0e}</b>: "
                        f"test accuracy {self.row['accuracy']:.1%}, "
                        f"{self.row['near_zero']:.0%} of fc1 weights near zero")


class AmountExplorer(_Explorer):
    """Choose the share of fc1 weights to prune (0 to 0.99); see the surviving
    weights and the accuracy with and without fine-tuning.

    The point under the slider is computed when the slider stops (prune,
    evaluate, fine-tune briefly: well under a second) and memoised; ``grid``
    (rows of ``experiments.amount_sweep``) draws the curves.
    """

    def __init__(self, model: nn.Module, data: Dataset, grid: Sequence[Mapping], *,
                 layers=("fc1",), finetune_epochs: int = AMOUNT_FINETUNE_EPOCHS,
                 lr: float = FINETUNE["lr"], value: float = 0.9):
        if not grid:
            raise ValueError("grid must hold at least one row of experiments.amount_sweep")
        check_float("value", value, 0.0, 0.99)
        check_int("finetune_epochs", finetune_epochs, 1)
        check_float("lr", lr, 0.0, low_open=True)
        _check_leaves_weights(_layers(model, layers), 0.99)  # the slider's top
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
        self.model, self.data, self.grid, self.layers = model, data, grid, layers
        self.finetune = {"finetune_epochs": finetune_epochs, "lr": lr}
        self._memo = {round(r["amount"], 4): r for r in grid}
        self.amount = widgets.FloatSlider(value=value, min=0.0, max=0.99, step=0.01,
                                          description="pruned", readout_format=".0%",
                                          continuous_update=False)
        self._assemble(self.amount)

    def point(self, amount: float) -> Mapping:
        """The sweep row for ``amount`` (computed once, then memoised)."""
        key = round(amount, 4)
        if key not in self._memo:
            self._memo[key] = amount_point(self.model, self.data, amount, layers=self.layers,
                                           **self.finetune)
        return self._memo[key]

    def update(self, change=None) -> None:
        self.row = self.point(self.amount.value)
        self._show(plots.amount_view(self.grid, self.row),
                   f"<b>{self.row['amount']:.0%} of fc1 pruned</b>: "
                   f"test accuracy {self.row['accuracy']:.1%} right after, "
                   f"{self.row['accuracy_finetuned']:.1%} after "
                   f"{self.finetune['finetune_epochs']} epochs of fine-tuning")


class TemperatureExplorer(_Explorer):
    """Choose a test digit and a temperature T (log slider, 0.5 to 20); see the
    teacher's softmax(z / T) beside T = 1. The teacher's logits on the test
    split are computed once, so the slider answers at once."""

    def __init__(self, teacher: nn.Module, data: Dataset, *, index: int = 0, T: float = 4.0):
        if not isinstance(data, Dataset):
            raise TypeError(f"data must be a helpers.data.Dataset, got {type(data).__name__}")
        check_int("index", index, 0, len(data.X_test) - 1)
        check_float("T", T, 0.5, 20.0)
        self.data = data
        self.logits = logits_of(teacher, data.X_test).cpu()
        self.index = widgets.BoundedIntText(value=index, min=0, max=len(data.X_test) - 1,
                                            description="test digit")
        self.T = widgets.FloatLogSlider(value=T, base=10, min=math.log10(0.5),
                                        max=math.log10(20), step=0.05, description="T",
                                        readout_format=".2f", continuous_update=True)
        self._assemble(self.index, self.T)

    def update(self, change=None) -> None:
        i, T = self.index.value, self.T.value
        z, label = self.logits[i], int(self.data.y_test[i])
        p = soft_targets(z, T)
        top = p.clone()
        top[int(p.argmax())] = 0
        runner = int(top.argmax())
        self.row = {"index": i, "T": T, "probs": p, "entropy": entropy(p).item()}
        fig = plots.soft_target_bars(z, T, self.data.classes, label=label,
                                     image=self.data.X_test[i] * self.data.std + self.data.mean)
        self._show(fig, f"<b>digit {self.data.classes[label]}, T = {T:.2f}</b>: entropy "
                        f"{self.row['entropy']:.2f} bits; runner-up class "
                        f"{self.data.classes[runner]} ({p[runner]:.1%})")


class DistillationExplorer(_Explorer):
    """Choose T and α among precomputed students (``experiments.distillation_grid``
    rows); see the accuracy grid and the chosen student's training curve."""

    def __init__(self, rows: Sequence[Mapping], *, scratch: Mapping | None = None,
                 T: float | None = None, alpha: float | None = None):
        if not rows:
            raise ValueError("rows must hold at least one distillation_grid row")
        self.rows, self.scratch = rows, scratch
        temps = sorted({r["T"] for r in rows})
        alphas = sorted({r["alpha"] for r in rows})
        if T is not None and T not in temps:
            raise ValueError(f"T must be one of the grid's temperatures {temps}, got {T!r}")
        if alpha is not None and alpha not in alphas:
            raise ValueError(f"alpha must be one of the grid's alphas {alphas}, got {alpha!r}")
        self.T = widgets.SelectionSlider(options=temps, value=T if T is not None else temps[0],
                                         description="T")
        self.alpha = widgets.SelectionSlider(options=alphas,
                                             value=alpha if alpha is not None else alphas[-1],
                                             description="α")
        self._assemble(self.T, self.alpha)

    def update(self, change=None) -> None:
        T, alpha = self.T.value, self.alpha.value
        self.row = next(r for r in self.rows if r["T"] == T and r["alpha"] == alpha)
        text = f"<b>T = {T:g}, α = {alpha:g}</b>: test accuracy {self.row['test_accuracy']:.1%}"
        if self.scratch is not None:
            gain = 100 * (self.row["test_accuracy"] - self.scratch["test_accuracy"])
            text += f" ({gain:+.1f} points over labels only)"
        self._show(plots.distillation_grid_view(self.rows, T, alpha, scratch=self.scratch), text)
