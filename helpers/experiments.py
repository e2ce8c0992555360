"""The notebooks' headline comparisons, each repeated over seeds.

Every function here runs one experiment of notebooks 01 to 04 once per seed
(``checkpoints.SEEDS``) and returns plain lists of accuracies, one per seed,
for ``stats.pm`` and ``stats.verdict`` to summarise. Choices (λ, the
threshold, the fine-tuning epochs, T and α, the omitted-digit bias) read the
validation split only; each final model is evaluated once on the test split.

The recipes are named constants; the comment beside each says where its
number comes from.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from . import distillation, pruning
from .checkpoints import SEEDS, get_baseline, get_teacher_ensemble, get_teachers
from .data import Dataset
from .training import evaluate, train

# Unstructured: the share of fc1 removed. Han et al. (2015) remove about 92% of
# LeNet-300-100's first layer; 90% is the round figure of the curriculum.
PRUNE_AMOUNT = 0.9
# Fine-tuning after pruning: up to 5 epochs at half the training rate; the
# epoch kept is the one with the best validation accuracy (keep_best).
FINETUNE = pruning.FINETUNE
# Structured: hidden neurons kept of 128 (a quarter: the curriculum's target).
STRUCTURED_KEEP = 32
# Soft Filter Pruning vs hard: 75% of the neurons (128 -> 32, as above), for
# 8 epochs at the training rate, the same budget for both methods.
SFP = {"amount": 0.75, "epochs": 8, "lr": 1e-3}
# Gradual vs one-shot: 90% of fc1, 10 epochs at 5e-4 for both; the cubic
# schedule reaches 90% two epochs before the end.
GRADUAL = {"final": 0.9, "epochs": 10, "lr": 5e-4}
# L1 + threshold: the λ stops of the slider and the thresholds tried; the
# choice is the sparsest (λ, threshold) whose validation accuracy stays within
# TOLERANCE of the plain baseline's (five validation digits of 500 = 1 point).
L1_THRESHOLDS = (0.005, 0.01, 0.02, 0.03)
TOLERANCE = 0.005
# Distillation: T and alpha as notebook 03 chooses them on validation (the
# lowest validation loss over its grid, distillation.choose_T_alpha); the
# comparison of notebook 04 distils with them without rerunning the grid.
KD = {"T": 8.0, "alpha": 0.9}
# Omitted digit: Hinton et al. leave out the 3s; T = 8 softens the teacher
# enough for the student to learn about 3s from the other digits.
OMITTED = {"cls": 3, "T": 8.0, "alpha": 0.9}


def _test(model: nn.Module, data: Dataset) -> float:
    return evaluate(model, data.X_test, data.y_test)["accuracy"]


def _val(model: nn.Module, data: Dataset) -> float:
    return evaluate(model, data.X_val, data.y_val)["accuracy"]


def _finetune(model: nn.Module, data: Dataset, seed: int, **overrides) -> nn.Module:
    """Train ``model`` in place with FINETUNE (and ``overrides``); return it."""
    train(model, data, seed=seed, progress=False, **{**FINETUNE, **overrides})
    return model


# The hard side of a same-budget comparison trains all its epochs, as the soft
# side does: no epoch is picked on validation.
_NO_CHOICE = {"keep_best": False, "evaluate_each_epoch": False}


def baseline_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> list[float]:
    """Test accuracy of the cached baseline for each seed."""
    return [get_baseline(data, seed=s)[1]["test_accuracy"] for s in seeds]


def _prune_finetune_runs(data: Dataset, seeds: Sequence[int], prune) -> dict[str, list[float]]:
    """``prune(baseline)`` (a pruned copy) then fine-tuned, for each seed's
    baseline: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    out = {"baseline": [], "pruned": [], "finetuned": []}
    for s in seeds:
        base, rec = get_baseline(data, seed=s)
        net = prune(base)
        out["baseline"].append(rec["test_accuracy"])
        out["pruned"].append(_test(net, data))
        out["finetuned"].append(_test(_finetune(net, data, s), data))
    return out


def unstructured_runs(data: Dataset, seeds: Sequence[int] = SEEDS,
                      amount: float = PRUNE_AMOUNT) -> dict[str, list[float]]:
    """``amount`` of fc1 pruned by magnitude, then fine-tuned, for each seed's
    baseline: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    return _prune_finetune_runs(data, seeds, lambda b: pruning.magnitude_prune(b, amount))


def structured_runs(data: Dataset, seeds: Sequence[int] = SEEDS,
                    keep: int = STRUCTURED_KEEP) -> dict[str, list[float]]:
    """fc1 cut to its ``keep`` strongest neurons (a smaller network), then
    fine-tuned: ``{"baseline", "pruned", "finetuned"}`` test accuracies."""
    return _prune_finetune_runs(data, seeds, lambda b: pruning.remove_neurons(b, keep))


def choose_l1_threshold(data: Dataset, lams: Sequence[float] = pruning.REG_LAMBDAS,
                        thresholds: Sequence[float] = L1_THRESHOLDS, *,
                        tolerance: float = TOLERANCE, seed: int = 0) -> dict:
    """Choose λ and the threshold on the validation split.

    For each λ (an L1-trained baseline, cached) and each threshold, fc1 is
    pruned by threshold and evaluated on validation. The choice is the pair
    with the highest fc1 sparsity whose validation accuracy is at most
    ``tolerance`` below the plain baseline's. Returns ``lam``, ``threshold``,
    ``sparsity`` and ``rows`` (every pair tried, with ``val_accuracy``).
    """
    base, _ = get_baseline(data, seed=seed)
    floor = _val(base, data) - tolerance
    rows = []
    for lam in lams:
        net, _ = pruning.regularised_model(data, "l1", lam, seed=seed)
        for t in thresholds:
            cut = pruning.threshold_prune(net, t)
            rows.append({"lam": float(lam), "threshold": float(t),
                         "sparsity": pruning.sparsity(cut)["fc1"], "val_accuracy": _val(cut, data)})
    ok = [r for r in rows if r["val_accuracy"] >= floor - 1e-9]
    if not ok:
        raise ValueError(f"no (λ, threshold) keeps validation accuracy within tolerance="
                         f"{tolerance}; try smaller λ or thresholds")
    best = max(ok, key=lambda r: (r["sparsity"], r["val_accuracy"]))
    return {"lam": best["lam"], "threshold": best["threshold"], "sparsity": best["sparsity"],
            "rows": rows}


def l1_vs_magnitude_runs(data: Dataset, lam: float, threshold: float,
                         seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """For each seed: the L1-trained model pruned by ``threshold``, and the plain
    baseline magnitude-pruned to the same fc1 sparsity, both without
    fine-tuning: ``{"sparsity", "l1", "plain"}``."""
    out = {"sparsity": [], "l1": [], "plain": []}
    for s in seeds:
        l1_net, _ = pruning.regularised_model(data, "l1", lam, seed=s)
        cut = pruning.threshold_prune(l1_net, threshold)
        sp = pruning.sparsity(cut)["fc1"]
        base, _ = get_baseline(data, seed=s)
        out["sparsity"].append(sp)
        out["l1"].append(_test(cut, data))
        out["plain"].append(_test(pruning.magnitude_prune(base, sp), data))
    return out


def sfp_vs_hard_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """Soft Filter Pruning vs hard neuron pruning plus fine-tuning, same
    sparsity and epochs (:data:`SFP`), both shrunk: ``{"sfp", "hard"}``."""
    out = {"sfp": [], "hard": []}
    for s in seeds:
        base, _ = get_baseline(data, seed=s)
        sfp, _ = pruning.soft_filter_prune(base, data, seed=s, **SFP)
        hard = _finetune(pruning.neuron_prune(base, SFP["amount"]), data, s,
                         epochs=SFP["epochs"], lr=SFP["lr"], **_NO_CHOICE)
        out["sfp"].append(_test(pruning.shrink(sfp), data))
        out["hard"].append(_test(pruning.shrink(hard), data))
    return out


def gradual_vs_oneshot_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """Gradual pruning (cubic schedule) vs one-shot pruning plus fine-tuning,
    same final sparsity and epochs (:data:`GRADUAL`): ``{"gradual", "one_shot"}``."""
    out = {"gradual": [], "one_shot": []}
    for s in seeds:
        base, _ = get_baseline(data, seed=s)
        gradual, _ = pruning.gradual_prune(base, data, seed=s, **GRADUAL)
        one = _finetune(pruning.magnitude_prune(base, GRADUAL["final"]), data, s,
                        epochs=GRADUAL["epochs"], lr=GRADUAL["lr"], **_NO_CHOICE)
        out["gradual"].append(_test(gradual, data))
        out["one_shot"].append(_test(one, data))
    return out


def omitted_digit_runs(data: Dataset, seeds: Sequence[int] = SEEDS, *,
                       cls: int = OMITTED["cls"], T: float = OMITTED["T"],
                       alpha: float = OMITTED["alpha"]) -> dict[str, dict[str, list[float]]]:
    """Hinton's omitted-digit experiment over seeds.

    Students (cached) never see class ``cls``: one from labels only, one
    distilled from the kit's teacher ensemble (trained on all digits). The bias of ``cls`` is then shifted so that the mean predicted
    probability of ``cls`` over the *unlabelled validation images* is
    1/classes (no label is read). Returns, for ``"labels only"`` and
    ``"distilled"``: ``recall_before``, ``recall_after`` (share of the test
    images of ``cls`` recognised), ``others_before``, ``others_after``
    (accuracy on the other test images) and ``shift``.
    """
    without = distillation.without_class(data, cls)
    teacher, _ = get_teacher_ensemble(data)
    prior = 1 / len(data.classes)
    others = data.y_test != cls
    out = {}
    trained = distillation.train_students(  # all ten students trained together
        without, [(T, a, s) for a in (0.0, alpha) for s in seeds], teacher=teacher)
    for k, name in enumerate(("labels only", "distilled")):
        res = {k: [] for k in ("recall_before", "recall_after", "others_before", "others_after",
                               "shift")}
        for student, _ in trained[k * len(seeds):(k + 1) * len(seeds)]:
            shift = distillation.bias_for_prior(student, data.X_val, cls, prior)
            fixed = distillation.shift_bias(student, cls, shift)
            res["shift"].append(shift)
            for when, m in (("before", student), ("after", fixed)):
                res[f"recall_{when}"].append(
                    distillation.class_recall(m, data.X_test, data.y_test, cls))
                res[f"others_{when}"].append(
                    evaluate(m, data.X_test[others], data.y_test[others])["accuracy"])
        out[name] = res
    return out


def teacher_runs(data: Dataset, seeds: Sequence[int] = SEEDS) -> list[float]:
    """Test accuracy of the cached teacher for each seed."""
    return [r["test_accuracy"] for _, r in get_teachers(data, seeds=seeds)]


def student_runs(data: Dataset, T: float, alpha: float,
                 seeds: Sequence[int] = SEEDS) -> dict[str, dict[str, list[float]]]:
    """Scratch (labels only) and distilled students over seeds, same recipe and
    batches; every distilled seed imitates the kit's teacher ensemble. For each:
    ``last`` (test accuracy after the last epoch), ``best`` (after the epoch of
    best validation accuracy), ``best_epoch`` and ``val_curves`` (each seed's
    validation accuracy per epoch)."""
    out = {}
    trained = distillation.train_students(data, [(T, a, s) for a in (0.0, alpha) for s in seeds])
    for k, name in enumerate(("labels only", "distilled")):
        recs = [r for _, r in trained[k * len(seeds):(k + 1) * len(seeds)]]
        out[name] = {"last": [r["test_accuracy"] for r in recs],
                     "best": [r["test_accuracy_best"] for r in recs],
                     "best_epoch": [r["best_epoch"] for r in recs],
                     "val_curves": [[h["val_accuracy"] for h in r["history"]] for r in recs]}
    return out
