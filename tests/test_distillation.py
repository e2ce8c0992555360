"""Tests for helpers.distillation (and the training pieces it leans on): the loss
against a hand-written formula, its gradients and the T^2 factor, finiteness at
extreme T and logits, an untouched teacher, determinism, the alpha = 0 path
against training.train, the omitted-digit helpers (shift_bias on quantised
models too), the cached students (keyed on the teacher),
random_shift / train(augment=True), get_teacher's recipe, and argument checks."""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

import helpers.distillation as hd
import helpers.experiments as ex
from helpers.distillation import (
    bias_for_prior,
    class_recall,
    distill,
    distillation_loss,
    entropy,
    shift_bias,
    soft_targets,
    without_class,
)
from helpers.experiments import get_student
from helpers.models import mlp
from helpers.quantization import quantize_int8
from helpers.training import EVAL_BATCH, evaluate, logits_of, random_shift, train

from conftest import close_state, hand_softmax, same_state, state, subset

CPU = "cpu"
PAIRS = [(0.5, 0.3), (1.0, 0.9), (2.0, 0.5), (4.0, 0.9), (7.5, 1.0), (20.0, 0.1)]


# --- helpers written out by hand ----------------------------------------------------------

def hand_ce(s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean over the batch of -log softmax(s)[y]."""
    p = hand_softmax(s)
    return torch.mean(-torch.log(p[torch.arange(len(y)), y]))


def hand_loss(s, t, y, T, alpha):
    """alpha T^2 mean_b sum_i p_t,i (log p_t,i - log p_s,i) + (1 - alpha) CE, in float64."""
    s, t = s.double(), t.double()
    pt, ps = hand_softmax(t / T), hand_softmax(s / T)
    kl = torch.sum(pt * (torch.log(pt) - torch.log(ps)), dim=-1).mean()
    return alpha * T * T * kl + (1 - alpha) * hand_ce(s, y)


def random_logits(seed, n=16, k=10, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, k, generator=g) * scale
    t = torch.randn(n, k, generator=g) * scale
    y = torch.randint(0, k, (n,), generator=g)
    return s, t, y


def checkpoints_in(cache) -> list:
    folder = cache / "checkpoints"
    return sorted(folder.glob("student-*.pt")) if folder.exists() else []




def run_distill(student, teacher, data, **kw):
    kw = {"T": 4.0, "alpha": 0.9, "epochs": 2, "progress": False, "device": CPU, **kw}
    return distill(student, teacher, data, **kw)


# --- 1, 2. the loss against the formula ---------------------------------------------------------

@pytest.mark.parametrize("T, alpha", PAIRS)
def test_loss_equals_the_formula_written_out(T, alpha):
    s, t, y = random_logits(seed=int(10 * T))
    got = distillation_loss(s, t, y, T=T, alpha=alpha)
    want = hand_loss(s, t, y, T, alpha)
    assert got.dim() == 0
    assert got.item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.parametrize("T", [0.1, 1.0, 3.0, 50.0])
def test_alpha_zero_is_plain_cross_entropy(T):
    s, t, y = random_logits(seed=7)
    want = hand_ce(s.double(), y).item()
    assert distillation_loss(s, t, y, T=T, alpha=0.0).item() == pytest.approx(want, rel=1e-5)
    # the teacher plays no part at all
    other = distillation_loss(s, -5 * t, y, T=T, alpha=0.0)
    assert other.item() == pytest.approx(want, rel=1e-5)


def test_alpha_one_ignores_the_labels():
    s, t, y = random_logits(seed=8)
    a = distillation_loss(s, t, y, T=3.0, alpha=1.0)
    b = distillation_loss(s, t, (y + 1) % 10, T=3.0, alpha=1.0)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    assert a.item() == pytest.approx(hand_loss(s, t, y, 3.0, 1.0).item(), rel=1e-5)


# --- 3. gradients and the T^2 factor -------------------------------------------------------------

@pytest.mark.parametrize("T", [0.5, 1.0, 2.0, 5.0, 20.0])
def test_gradient_wrt_student_logits_is_T_times_the_softmax_gap(T):
    s, t, y = random_logits(seed=11, n=8)
    s = s.double().requires_grad_(True)
    t = t.double()
    distillation_loss(s, t, y, T=T, alpha=1.0).backward()
    # d/dz [T^2 KL(p_t || softmax(z/T))] = T (softmax(z/T) - p_t); the batch mean divides by B
    want = T * (hand_softmax(s.detach() / T) - hand_softmax(t / T)) / len(y)
    torch.testing.assert_close(s.grad, want, rtol=1e-6, atol=1e-12)


def test_T_squared_keeps_the_soft_gradient_scale_for_small_logit_gaps():
    s, t, y = random_logits(seed=12, n=32, scale=0.1)  # small logits: the high-T regime

    def grad_norms(T):
        z = s.double().requires_grad_(True)
        distillation_loss(z, t.double(), y, T=T, alpha=1.0).backward()
        with_factor = z.grad.clone()
        # the same KL without T^2, written out by hand
        z2 = s.double().requires_grad_(True)
        pt, ps = hand_softmax(t.double() / T), hand_softmax(z2 / T)
        torch.sum(pt * (torch.log(pt) - torch.log(ps)), dim=-1).mean().backward()
        return with_factor, with_factor.norm().item(), z2.grad.norm().item()

    _, n5, bare5 = grad_norms(5.0)
    g20, n20, bare20 = grad_norms(20.0)
    assert n5 / n20 == pytest.approx(1.0, rel=0.2)
    # without T^2 the gradient shrinks like 1/T^2: (20 / 5)^2 = 16
    assert bare5 / bare20 == pytest.approx(16.0, rel=0.2)
    # Hinton's high-T limit: the gradient tends to (centred gap of the logits) / (K B)
    gap = s.double() - t.double()
    limit = (gap - gap.mean(dim=1, keepdim=True)) / (10 * len(y))
    torch.testing.assert_close(g20, limit, rtol=0.05, atol=1e-6)


# --- 4. finite everywhere ----------------------------------------------------------------------

EXTREMES = {
    "huge +-1e4": (torch.tensor([[1e4, -1e4, 0.0, 1e4], [-1e4, -1e4, 1e4, 0.0]]),
                   torch.tensor([[-1e4, 1e4, 1e4, 0.0], [1e4, 0.0, -1e4, -1e4]])),
    "0 and 1e4": (torch.tensor([[0.0, 1e4, 0.0, 0.0], [1e4, 0.0, 0.0, 1e4]]),
                  torch.tensor([[1e4, 0.0, 0.0, 0.0], [0.0, 0.0, 1e4, 0.0]])),
    "moderate": (torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0]]),
                 torch.tensor([[-1.0, 2.0, 0.0, 0.0], [5.0, -5.0, 1.0, 1.0]])),
}


@pytest.mark.parametrize("case", list(EXTREMES))
@pytest.mark.parametrize("T", [0.1, 0.5, 1.0, 10.0, 100.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_loss_and_gradient_stay_finite(case, T, alpha):
    s0, t = EXTREMES[case]
    y = torch.tensor([1, 3])
    s = s0.clone().requires_grad_(True)
    loss = distillation_loss(s, t, y, T=T, alpha=alpha)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() >= -1e-6
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("case", list(EXTREMES))
@pytest.mark.parametrize("T", [0.1, 1.0, 4.0, 100.0])
def test_identical_student_and_teacher_give_zero_soft_loss(case, T):
    _, t = EXTREMES[case]
    s = t.clone().requires_grad_(True)
    loss = distillation_loss(s, t, torch.tensor([0, 2]), T=T, alpha=1.0)
    loss.backward()
    assert abs(loss.item()) <= 1e-6
    assert torch.isfinite(s.grad).all() and s.grad.abs().max().item() <= 1e-6


def test_infinite_temperature_is_rejected():
    s, t, y = random_logits(seed=13)
    with pytest.raises(ValueError, match=r"^T\b"):
        distillation_loss(s, t, y, T=float("inf"), alpha=0.5)


# --- soft_targets, entropy, logits_of ------------------------------------------------------------

def test_soft_targets_sum_to_one_match_softmax_and_flatten_with_T():
    _, z, _ = random_logits(seed=14, scale=4.0)
    for T in (0.2, 1.0, 3.0, 1e3, 1e6):
        p = soft_targets(z, T)
        torch.testing.assert_close(p.sum(-1), torch.ones(len(z)))
        torch.testing.assert_close(p, hand_softmax(z / T))
    torch.testing.assert_close(soft_targets(z, 1.0), hand_softmax(z))
    # T -> large: approaches uniform, and monotonically so
    gaps = [(soft_targets(z, T) - 0.1).abs().max().item() for T in (1.0, 10.0, 100.0, 1e4)]
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-3
    # T -> small: approaches one-hot at the argmax
    torch.testing.assert_close(soft_targets(z, 1e-3), nn.functional.one_hot(z.argmax(1), 10).float())


def test_entropy_in_bits():
    assert entropy(torch.full((10,), 0.1)).item() == pytest.approx(math.log2(10), rel=1e-6)
    assert entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0
    assert entropy(torch.tensor([0.5, 0.5, 0.0])).item() == pytest.approx(1.0, rel=1e-6)
    p = torch.tensor([[0.7, 0.2, 0.1], [0.25, 0.25, 0.5]])
    want = [-sum(v * math.log2(v) for v in row) for row in p.tolist()]
    assert entropy(p).tolist() == pytest.approx(want, rel=1e-6)


def test_logits_of_matches_a_forward_pass_in_eval_mode_and_restores_the_mode():
    g = torch.Generator().manual_seed(15)
    X = torch.randn(25, 1, 28, 28, generator=g)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Dropout(0.5))
    net.train()
    z = logits_of(net, X, batch_size=7)
    assert net.training
    with torch.no_grad():
        want = net[1](X.flatten(1))  # dropout is the identity in eval mode
    torch.testing.assert_close(z, want)
    assert not z.requires_grad


# --- 5. the teacher during distillation ------------------------------------------------------------

def test_distill_leaves_the_teacher_unchanged_and_trains_the_student(small, teacher):
    """distill reads the teacher once, under no_grad: its weights and mode are
    exactly as before, and no gradient reaches it."""
    for mode in ("eval", "train"):
        t = mlp(16, seed=1)
        t.load_state_dict(teacher.state_dict())
        t.train(mode == "train")
        before_t = state(t)
        student = mlp(8, seed=0)
        before_s = state(student)
        history = run_distill(student, t, small, epochs=2)
        assert same_state(state(t), before_t)
        assert all(p.grad is None for p in t.parameters())
        assert t.training == (mode == "train")
        assert not same_state(state(student), before_s)
        assert [r["epoch"] for r in history] == [1, 2]
        assert not student.training


def test_the_teacher_logits_come_from_eval_mode(small):
    """A dropout teacher in train mode: distill uses its eval-mode logits."""
    torch.manual_seed(0)
    t = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), nn.Dropout(0.9))
    t.train()
    with torch.no_grad():
        eval_logits = t[1](small.X_train.flatten(1))  # dropout off, by hand
    a, b = mlp(8, seed=0), mlp(8, seed=0)
    ha = run_distill(a, t, small, epochs=1, seed=3)
    hb = run_distill(b, t, small, epochs=1, seed=3, logits=eval_logits)
    assert same_state(state(a), state(b))
    assert ha[0]["train_loss"] == hb[0]["train_loss"]
    assert t.training


def test_teacher_forward_runs_once_per_call_in_eval_chunks(embedded):
    data = subset(embedded, 2100, 100, "distill-2100")
    t = mlp(16, seed=2)
    calls = []
    t.register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    run_distill(mlp(8, seed=0), t, data, epochs=2, batch_size=300)
    chunk = EVAL_BATCH  # helpers.training's evaluation batch
    assert len(calls) == math.ceil(2100 / chunk)
    assert calls == [chunk] * (2100 // chunk) + [2100 % chunk] * (2100 % chunk > 0)
    # given logits: the teacher is not run at all
    calls.clear()
    logits = logits_of(t, data.X_train)
    calls.clear()
    run_distill(mlp(8, seed=0), t, data, epochs=1, batch_size=300, logits=logits)
    assert calls == []


def test_given_logits_give_the_same_student_as_the_teacher(small, teacher):
    a, b = mlp(8, seed=0), mlp(8, seed=0)
    ha = run_distill(a, teacher, small, seed=4)
    hb = run_distill(b, teacher, small, seed=4, logits=logits_of(teacher, small.X_train))
    assert same_state(state(a), state(b))
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]


# --- determinism and the alpha = 0 path ------------------------------------------------------------

def test_same_seed_same_student_different_seed_different(small, teacher):
    runs = {}
    for key, seed in (("a", 5), ("b", 5), ("c", 6)):
        net = mlp(8, seed=0)
        history = run_distill(net, teacher, small, seed=seed)
        runs[key] = (state(net), history)
    (sa, ha), (sb, hb), (sc, hc_) = runs["a"], runs["b"], runs["c"]
    assert same_state(sa, sb)
    def strip(h):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in h]

    assert strip(ha) == strip(hb)
    assert not same_state(sa, sc)
    assert [r["train_loss"] for r in ha] != [r["train_loss"] for r in hc_]


@pytest.mark.parametrize("T", [1.0, 6.0])
def test_alpha_zero_is_bitwise_training_from_the_labels(small, teacher, T):
    a, b = mlp(8, seed=3), mlp(8, seed=3)
    ha = run_distill(a, teacher, small, T=T, alpha=0.0, epochs=2, lr=2e-3, batch_size=50, seed=9)
    hb = train(b, small, epochs=2, lr=2e-3, optimizer="adam", batch_size=50, seed=9,
               progress=False, device=CPU)
    assert same_state(state(a), state(b))
    for ra, rb in zip(ha, hb, strict=True):
        assert set(ra) == set(rb)
        for k in ("epoch", "train_loss", "val_accuracy", "val_loss"):
            assert ra[k] == rb[k]


def test_history_rows_report_the_loss_and_the_validation_accuracy(small, teacher):
    student = mlp(8, seed=0)
    history = run_distill(student, teacher, small, epochs=1, T=2.0, alpha=0.5)
    (row,) = history
    assert set(row) == {"epoch", "train_loss", "seconds", "val_accuracy", "val_loss"}
    with torch.no_grad():
        out = student(small.X_val)
    correct = sum(int(a == b) for a, b in zip(out.argmax(1).tolist(), small.y_val.tolist()))
    assert row["val_accuracy"] == pytest.approx(correct / len(small.y_val), abs=1e-12)
    assert row["val_loss"] == pytest.approx(hand_ce(out.double(), small.y_val).item(), rel=1e-5)
    assert row["train_loss"] > 0 and row["seconds"] >= 0


def test_train_loss_is_the_mean_distillation_loss_of_the_epoch(small, teacher):
    """One full batch: train_loss is the formula written out at the initial weights."""
    student = mlp(8, seed=0)
    ref = mlp(8, seed=0)
    with torch.no_grad():
        want = hand_loss(ref(small.X_train), teacher(small.X_train), small.y_train, 3.0, 0.6)
    (row,) = run_distill(student, teacher, small, epochs=1, T=3.0, alpha=0.6,
                         batch_size=len(small.X_train))
    assert row["train_loss"] == pytest.approx(want.item(), rel=1e-5)


# --- the omitted-digit helpers ---------------------------------------------------------------------

def test_without_class_removes_exactly_that_class(small):
    for cls in (0, 3, 9):
        d = without_class(small, cls)
        keep = [i for i, v in enumerate(small.y_train.tolist()) if v != cls]
        assert len(keep) < len(small.y_train)
        assert d.y_train.tolist() == [small.y_train[i].item() for i in keep]
        assert torch.equal(d.X_train, small.X_train[keep])
        assert torch.equal(d.X_test, small.X_test) and torch.equal(d.y_test, small.y_test)
        assert (d.classes, d.mean, d.std) == (small.classes, small.mean, small.std)
        assert d.name == f"{small.name}-without-{cls}"  # another name: caches keep them apart
    assert (small.y_train == 3).any()  # the input is untouched


@pytest.mark.parametrize("cls, prior", [(3, 0.1), (7, 0.02), (0, 0.5)])
def test_bias_for_prior_reaches_the_prior(small, cls, prior):
    net = mlp(8, seed=0)
    train(net, without_class(small, cls), epochs=1, progress=False, evaluate_each_epoch=False,
          device=CPU)
    before = state(net)
    X = small.X_test
    shift = bias_for_prior(net, X, cls, prior)
    fixed = shift_bias(net, cls, shift)
    with torch.no_grad():
        p = hand_softmax(fixed(X).double())[:, cls].mean().item()
        p0 = hand_softmax(net(X).double())[:, cls].mean().item()
    assert p == pytest.approx(prior, abs=1e-4)
    assert (shift > 0) == (p0 < prior)
    assert same_state(state(net), before)


def test_shift_bias_changes_one_entry_of_the_last_bias_only():
    net = mlp((16, 12), seed=4)
    before = state(net)
    out = shift_bias(net, 6, 2.5)
    assert out is not net
    assert same_state(state(net), before)
    after = state(out)
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed == ["fc3.bias"]
    diff = after["fc3.bias"] - before["fc3.bias"]
    assert diff[6].item() == pytest.approx(2.5, rel=1e-6)
    assert (torch.cat([diff[:6], diff[7:]]) == 0).all()


def test_shift_bias_works_on_a_quantised_model():
    net = quantize_int8(mlp(12, seed=5))
    before = state(net)
    out = shift_bias(net, 2, -1.5)
    assert same_state(state(net), before)
    after = state(out)
    changed = [k for k in after if not torch.equal(after[k], before[k])]
    assert changed == ["fc2.bias"]
    diff = after["fc2.bias"] - before["fc2.bias"]
    assert diff[2].item() == pytest.approx(-1.5, rel=1e-6)
    assert (torch.cat([diff[:2], diff[3:]]) == 0).all()
    # the logits move by exactly the shift in that column
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        delta = out(x) - net(x)
    torch.testing.assert_close(delta[:, 2], torch.full((4,), -1.5))
    assert (torch.cat([delta[:, :2], delta[:, 3:]], 1).abs() < 1e-6).all()


def test_shift_bias_rejects_a_model_without_a_bias_vector():
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, bias=False))
    with pytest.raises(ValueError, match="bias"):
        shift_bias(net, 1, 1.0)


def test_class_recall_against_a_hand_count(small, teacher):
    X, y = small.X_test, small.y_test
    with torch.no_grad():
        pred = teacher(X).argmax(1).tolist()
    for cls in range(10):
        idx = [i for i, v in enumerate(y.tolist()) if v == cls]
        want = sum(pred[i] == cls for i in idx) / len(idx)
        assert class_recall(teacher, X, y, cls) == pytest.approx(want, abs=1e-7)


def test_class_recall_restores_the_mode(small):
    net = mlp(8, seed=0)
    net.train()
    class_recall(net, small.X_test, small.y_test, 1)
    assert net.training


# --- cached students ------------------------------------------------------------------------------

TINY = {"hidden": 8, "epochs": 1}


@pytest.fixture
def no_kit_teacher(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("get_teacher_ensemble must not be called when teacher= is given")

    monkeypatch.setattr(ex, "get_teacher_ensemble", refuse)


def test_get_student_caches_and_matches_a_direct_distill(small, teacher, isolated_cache,
                                                         no_kit_teacher):
    net, rec = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    assert rec["cached"] is False
    assert len(checkpoints_in(isolated_cache)) == 1
    # independent: the same recipe through distill by hand
    ref = mlp(8, seed=0)
    hist = distill(ref, teacher, small, T=3.0, alpha=0.7, epochs=1, lr=1e-3, batch_size=64,
                   seed=0, progress=False, device=CPU)
    assert close_state(state(net), state(ref))  # trained in a stack: equal to rounding
    assert torch.equal(net(small.X_test).argmax(1), ref(small.X_test).argmax(1))
    assert rec["test_accuracy"] == evaluate(ref, small.X_test, small.y_test)["accuracy"]
    assert rec["best_epoch"] == 1 and rec["test_accuracy_best"] == rec["test_accuracy"]
    assert [r["train_loss"] for r in rec["history"]] == pytest.approx(
        [r["train_loss"] for r in hist], rel=1e-5)
    assert [r["val_accuracy"] for r in rec["history"]] == [r["val_accuracy"] for r in hist]

    again, rec2 = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    assert rec2["cached"] is True and again is not net
    assert same_state(state(again), state(net))
    assert rec2["history"] == rec["history"] and rec2["test_accuracy"] == rec["test_accuracy"]
    assert len(checkpoints_in(isolated_cache)) == 1


def test_get_student_alpha_zero_ignores_T_and_other_T_are_other_entries(
        small, teacher, isolated_cache, no_kit_teacher):
    a, ra = get_student(small, T=1.0, alpha=0.0, teacher=teacher, recipe=TINY)
    b, rb = get_student(small, T=7.0, alpha=0.0, teacher=teacher, recipe=TINY)
    assert (ra["cached"], rb["cached"]) == (False, True)
    assert same_state(state(a), state(b))
    assert len(checkpoints_in(isolated_cache)) == 1
    # alpha = 0 is the label-only student: train() with the same recipe
    ref = mlp(8, seed=0)
    train(ref, small, epochs=1, lr=1e-3, batch_size=64, seed=0, progress=False, device=CPU)
    assert close_state(state(a), state(ref))

    c, rc = get_student(small, T=2.0, alpha=0.5, teacher=teacher, recipe=TINY)
    d, rd = get_student(small, T=5.0, alpha=0.5, teacher=teacher, recipe=TINY)
    assert (rc["cached"], rd["cached"]) == (False, False)
    assert len(checkpoints_in(isolated_cache)) == 3
    assert not same_state(state(c), state(d))
    assert not same_state(state(a), state(c))


def test_get_student_reuses_nothing_when_the_teacher_changes(small, teacher, isolated_cache,
                                                              no_kit_teacher, monkeypatch):
    other = mlp(16, seed=1)
    other.load_state_dict(teacher.state_dict())
    with torch.no_grad():
        other.fc2.bias[0] += 0.5  # one number differs: another teacher
    trainings = []
    real = ex._train_stack
    monkeypatch.setattr(ex, "_train_stack", lambda *a, **k: trainings.append(1) or real(*a, **k))
    a, ra = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    b, rb = get_student(small, T=3.0, alpha=0.7, teacher=other, recipe=TINY)
    assert trainings == [1, 1]
    assert (ra["cached"], rb["cached"]) == (False, False)
    assert len(checkpoints_in(isolated_cache)) == 2
    assert not same_state(state(a), state(b))
    assert [r["train_loss"] for r in ra["history"]] != [r["train_loss"] for r in rb["history"]]
    # each is its own distillation from its own teacher
    ref = mlp(8, seed=0)
    distill(ref, other, small, T=3.0, alpha=0.7, epochs=1, seed=0, device=CPU)
    assert close_state(state(b), state(ref))
    # and each is found again for its own teacher
    _, ra2 = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    _, rb2 = get_student(small, T=3.0, alpha=0.7, teacher=other, recipe=TINY)
    assert (ra2["cached"], rb2["cached"]) == (True, True) and trainings == [1, 1]
    assert rb2["history"] == rb["history"]


def test_get_student_loads_the_kit_teacher_only_when_none_is_given(small, teacher, monkeypatch):
    calls = []

    def fake_get_teacher_ensemble(data, **kw):
        calls.append(data.name)
        return teacher, [{"cached": True}]

    monkeypatch.setattr(ex, "get_teacher_ensemble", fake_get_teacher_ensemble)
    a, _ = get_student(small, T=2.0, alpha=0.5, recipe=TINY)
    assert calls == ["distill-subset"]
    # Cached: the teacher is looked up again (its fingerprint is in the key),
    # and the student is not trained again.
    b, rb = get_student(small, T=2.0, alpha=0.5, recipe=TINY)
    assert calls == ["distill-subset"] * 2 and rb["cached"] is True
    assert same_state(state(a), state(b))


# --- 6. argument checks ---------------------------------------------------------------------------

BAD_T = [0, 0.0, -1, float("nan")]
BAD_ALPHA = [-0.1, 1.1, float("nan")]


@pytest.fixture
def no_training(monkeypatch):
    """Make any training of students, or loading of the kit's teacher, fail the test."""
    monkeypatch.setattr(ex, "_train_stack", lambda *a, **k: pytest.fail("trained"))
    monkeypatch.setattr(ex, "get_teacher_ensemble", lambda *a, **k: pytest.fail("teacher loaded"))


@pytest.mark.parametrize("T", BAD_T)
def test_bad_T_is_rejected_everywhere(T, small, teacher, isolated_cache, no_training):
    s, t, y = random_logits(seed=16)
    with pytest.raises(ValueError, match=r"^T\b"):
        distillation_loss(s, t, y, T=T, alpha=0.5)
    with pytest.raises(ValueError, match=r"^T\b"):
        distillation_loss(s, t, y, T=T, alpha=0.0)
    with pytest.raises(ValueError, match=r"^T\b"):
        soft_targets(t, T)
    student = mlp(8, seed=0)
    before = state(student)
    with pytest.raises(ValueError, match=r"^T\b"):
        run_distill(student, teacher, small, T=T)
    assert same_state(state(student), before)
    for alpha in (0.0, 0.5):
        with pytest.raises(ValueError, match=r"^T\b"):
            get_student(small, T=T, alpha=alpha, recipe=TINY)
    assert checkpoints_in(isolated_cache) == []


@pytest.mark.parametrize("alpha", BAD_ALPHA)
def test_bad_alpha_is_rejected_everywhere(alpha, small, teacher, isolated_cache, no_training):
    s, t, y = random_logits(seed=17)
    with pytest.raises(ValueError, match=r"^alpha\b"):
        distillation_loss(s, t, y, T=2.0, alpha=alpha)
    student = mlp(8, seed=0)
    before = state(student)
    with pytest.raises(ValueError, match=r"^alpha\b"):
        run_distill(student, teacher, small, alpha=alpha)
    assert same_state(state(student), before)
    with pytest.raises(ValueError, match=r"^alpha\b"):
        get_student(small, T=2.0, alpha=alpha, recipe=TINY)
    assert checkpoints_in(isolated_cache) == []


def test_distill_rejects_bad_epochs_and_logits(small, teacher, isolated_cache):
    student = mlp(8, seed=0)
    before = state(student)
    for epochs in (0, -1, 1.5):
        with pytest.raises(ValueError, match=r"^epochs\b"):
            run_distill(student, teacher, small, epochs=epochs)
    z = logits_of(teacher, small.X_train)
    for bad in (z[:-1], torch.cat([z, z[:1]])):
        with pytest.raises(ValueError, match=r"^logits\b"):
            run_distill(student, teacher, small, logits=bad)
    assert same_state(state(student), before)
    # through get_student, with a teacher given: fails before training, nothing cached
    with pytest.raises(ValueError, match=r"^recipe\['epochs'\]"):
        get_student(small, teacher=teacher, recipe={"hidden": 8, "epochs": 0})
    assert checkpoints_in(isolated_cache) == []


def test_get_student_checks_the_recipe_before_loading_the_teacher(small, monkeypatch):
    monkeypatch.setattr(ex, "get_teacher_ensemble",
                        lambda *a, **k: pytest.fail("teacher loaded before the recipe was checked"))
    with pytest.raises(ValueError, match=r"^recipe\['epochs'\]"):
        get_student(small, recipe={"hidden": 8, "epochs": 0})
    with pytest.raises(ValueError, match=r"^recipe keys"):
        get_student(small, recipe={"hidden": 8, "epoch": 3})


def test_omitted_digit_helpers_reject_bad_arguments(small, teacher):
    for cls in (10, -1):
        with pytest.raises(ValueError, match=r"^cls\b"):
            without_class(small, cls)
        with pytest.raises(ValueError, match=r"^cls\b"):
            bias_for_prior(teacher, small.X_test, cls, 0.1)
        with pytest.raises(ValueError, match=r"^cls\b"):
            shift_bias(teacher, cls, 1.0)
    for prior in (0, 1, 0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"^prior\b"):
            bias_for_prior(teacher, small.X_test, 3, prior)
    y = small.y_test.clone()
    y[y == 4] = 5
    with pytest.raises(ValueError, match=r"^y\b.*\b4\b"):
        class_recall(teacher, small.X_test, y, 4)
    with pytest.raises(ValueError, match=r"^y\b"):
        class_recall(teacher, small.X_test, small.y_test, 10)


# --- random_shift and train(augment=True) ------------------------------------------------------

def test_random_shift_rolls_by_the_drawn_offsets():
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(18))
    g = torch.Generator().manual_seed(19)
    replay = torch.Generator().manual_seed(19)
    seen = set()
    for _ in range(30):
        out = random_shift(x, g)
        dy, dx = torch.randint(-2, 3, (2,), generator=replay).tolist()
        assert out.shape == x.shape
        assert torch.equal(out, torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))
        # by index, independently of torch.roll: out[..., i, j] = x[..., i - dy, j - dx]
        rows = [(i - dy) % 28 for i in range(28)]
        cols = [(j - dx) % 28 for j in range(28)]
        assert torch.equal(out, x[:, :, rows][:, :, :, cols])
        seen.add((dy, dx))
    assert all(abs(a) <= 2 and abs(b) <= 2 for a, b in seen) and len(seen) > 5
    g = torch.Generator().manual_seed(20)
    replay = torch.Generator().manual_seed(20)
    out = random_shift(x, g, max_shift=5)
    dy, dx = torch.randint(-5, 6, (2,), generator=replay).tolist()
    assert torch.equal(out, torch.roll(x, shifts=(dy, dx), dims=(-2, -1)))


def test_train_with_augment_is_seeded_and_differs_from_plain(small):
    nets = [mlp(8, seed=0) for _ in range(3)]
    kw = {"epochs": 1, "progress": False, "evaluate_each_epoch": False, "device": CPU, "seed": 2}
    ha = train(nets[0], small, augment=True, **kw)
    hb = train(nets[1], small, augment=True, **kw)
    hc_ = train(nets[2], small, augment=False, **kw)
    assert same_state(state(nets[0]), state(nets[1]))
    assert ha[0]["train_loss"] == hb[0]["train_loss"]
    assert not same_state(state(nets[0]), state(nets[2]))
    assert ha[0]["train_loss"] != hc_[0]["train_loss"]


def test_train_with_augment_sees_shifted_batches(small):
    """The batches the model sees are the plain batches rolled by the replayed offsets."""
    net = mlp(8, seed=0)
    seen = []
    net.register_forward_pre_hook(lambda m, inp: seen.append(inp[0].detach().clone()))
    train(net, small, epochs=1, batch_size=100, seed=4, augment=True, progress=False,
          evaluate_each_epoch=False, device=CPU)
    g = torch.Generator().manual_seed(4)
    order = torch.randperm(len(small.X_train), generator=g)
    want = []
    for i in range(0, len(order), 100):
        xb = small.X_train[order[i:i + 100]]
        dy, dx = torch.randint(-2, 3, (2,), generator=g).tolist()
        want.append(torch.roll(xb, shifts=(dy, dx), dims=(-2, -1)))
    assert len(seen) == len(want) == 3
    assert all(torch.equal(a, b) for a, b in zip(seen, want))


def test_get_teacher_trains_with_the_augmented_recipe(small, monkeypatch):
    assert ex.TEACHER_RECIPE["augment"] is True
    recorded = []

    def fake_train(model, data, **kw):  # no training: just what get_teacher asks for
        recorded.append(kw)
        return [{"epoch": 1, "train_loss": 0.0, "seconds": 0.0}]

    monkeypatch.setattr(ex, "train", fake_train)
    net, rec = ex.get_teacher(small)
    assert type(net).__name__ == "SmallCNN"
    assert len(recorded) == 1
    assert {k: recorded[0][k] for k in ex.TEACHER_RECIPE} == ex.TEACHER_RECIPE
    assert recorded[0]["seed"] == 0
    _, rec2 = ex.get_teacher(small)
    assert (rec["cached"], rec2["cached"]) == (False, True) and len(recorded) == 1
    # the recipe is part of the key: without augmentation it is another teacher
    monkeypatch.setattr(ex, "TEACHER_RECIPE", {**ex.TEACHER_RECIPE, "augment": False})
    _, rec3 = ex.get_teacher(small)
    assert rec3["cached"] is False and recorded[-1]["augment"] is False


def test_stacked_loss_is_each_students_distillation_loss():
    g = torch.Generator().manual_seed(21)
    s = torch.randn(3, 16, 10, generator=g) * 3
    t = torch.randn(3, 16, 10, generator=g) * 3
    y = torch.randint(0, 10, (3, 16), generator=g)
    Ts, alphas = [1.0, 4.0, 8.0], [0.0, 0.5, 0.9]
    got = hd.stacked_distillation_loss(s, t, y, T=torch.tensor(Ts), alpha=torch.tensor(alphas))
    want = [distillation_loss(s[m], t[m], y[m], T=Ts[m], alpha=alphas[m]) for m in range(3)]
    assert torch.allclose(got, torch.stack(want), atol=1e-5)


def test_train_students_trains_the_uncached_ones_together(small, teacher, isolated_cache,
                                                         no_kit_teacher, monkeypatch):
    stacks = []
    real = ex._train_stack
    monkeypatch.setattr(ex, "_train_stack",
                        lambda data, specs, *a: stacks.append(list(specs)) or real(data, specs, *a))
    one, _ = get_student(small, T=4.0, alpha=0.9, seed=1, teacher=teacher, recipe=TINY)
    specs = [(4.0, 0.9, 1), (4.0, 0.9, 2), (1.0, 0.0, 2)]
    got = ex.train_students(small, specs, teacher=teacher, recipe=TINY)
    assert stacks == [[(4.0, 0.9, 1)], [(4.0, 0.9, 2), (1.0, 0.0, 2)]]  # the first was cached
    assert [r["cached"] for _, r in got] == [True, False, False]
    assert same_state(state(got[0][0]), state(one))
    # each member is what distilling (or training) it alone gives, to rounding
    ref = mlp(8, seed=2)
    distill(ref, teacher, small, T=4.0, alpha=0.9, epochs=1, seed=2, device=CPU)
    assert close_state(state(got[1][0]), state(ref))
    ref0 = mlp(8, seed=2)
    train(ref0, small, epochs=1, seed=2, device=CPU)
    assert close_state(state(got[2][0]), state(ref0))
    assert len(checkpoints_in(isolated_cache)) == 3


# --- bad input gets a clear answer (issue 19) ---------------------------------------

@pytest.mark.parametrize("T", [1e-300, 1e-30, 1e-6])
@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_a_tiny_temperature_gives_hintons_low_T_limit(T, alpha):
    """As T -> 0, T^2 KL -> T * (max s - s[argmax t]) per row (p_T is one-hot):
    finite, and negligible next to the cross-entropy."""
    s, t, y = random_logits(seed=22)
    s = s.clone().requires_grad_(True)
    loss = distillation_loss(s, t, y, T=T, alpha=alpha)
    loss.backward()
    gap = (s.detach().max(1).values - s.detach()[torch.arange(len(s)), t.argmax(1)]).double()
    want = alpha * T * gap.mean().item() + (1 - alpha) * hand_ce(s.detach().double(), y).item()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-45)


def test_soft_targets_at_a_tiny_temperature_are_the_one_hot_argmax():
    _, z, _ = random_logits(seed=23)
    for T in (1e-300, 1e-40):
        torch.testing.assert_close(soft_targets(z, T), nn.functional.one_hot(z.argmax(1), 10).float())
    tied = torch.tensor([[2.0, 2.0, -1.0]])
    torch.testing.assert_close(soft_targets(tied, 1e-300), torch.tensor([[0.5, 0.5, 0.0]]))


@pytest.mark.parametrize("T", [101.0, 1e4, 1e200])
def test_temperatures_beyond_float32s_resolution_are_refused(T):
    s, t, y = random_logits(seed=24)
    with pytest.raises(ValueError, match=r"^T must be in \(0, 100\]"):
        distillation_loss(s, t, y, T=T, alpha=0.5)
    assert distillation_loss(s, t, y, T=100.0, alpha=1.0).item() == pytest.approx(
        hand_loss(s, t, y, 100.0, 1.0).item(), rel=1e-3)


@pytest.mark.parametrize("teacher, labels, word", [
    (torch.zeros(4, 1), torch.zeros(4, dtype=torch.long), "teacher_logits"),
    (torch.zeros(1, 10), torch.zeros(4, dtype=torch.long), "teacher_logits"),
    (torch.zeros(4, 10), torch.zeros(4, 1, dtype=torch.long), "labels"),
    (torch.zeros(4, 10), torch.full((4,), -100), "labels"),
    (torch.zeros(4, 10), torch.full((4,), 10), "labels"),
    (torch.zeros(4, 10), torch.zeros(4), "labels"),
], ids=["teacher-4x1", "teacher-1x10", "labels-4x1", "labels-100", "labels-10", "float-labels"])
def test_logits_and_labels_that_do_not_match_are_refused(teacher, labels, word):
    with pytest.raises((ValueError, TypeError), match=rf"^{word}\b"):
        distillation_loss(torch.zeros(4, 10), teacher, labels, T=2.0, alpha=0.5)


def test_stacked_loss_checks_its_arguments():
    s, t = torch.zeros(2, 4, 10), torch.zeros(2, 4, 10)
    y = torch.zeros(2, 4, dtype=torch.long)
    ok = {"T": torch.tensor([1.0, 2.0]), "alpha": torch.tensor([0.5, 0.5])}
    for bad, word in ((dict(ok, T=torch.tensor([-1.0, 2.0])), "T"),
                      (dict(ok, T=torch.tensor([1.0, float("nan")])), "T"),
                      (dict(ok, T=torch.tensor([1.0])), "T"),
                      (dict(ok, alpha=torch.tensor([5.0, 0.5])), "alpha"),
                      (dict(ok, T=2.0), "T")):
        with pytest.raises((ValueError, TypeError), match=rf"^{word}\b"):
            hd.stacked_distillation_loss(s, t, y, **bad)
    with pytest.raises(ValueError, match=r"^teacher_logits\b"):
        hd.stacked_distillation_loss(s, t[:, :, :1], y, **ok)
    with pytest.raises(ValueError, match=r"^labels\b"):
        hd.stacked_distillation_loss(s, t, y[0], **ok)


@pytest.mark.parametrize("probs", [torch.tensor([0.5, 0.6]), torch.tensor([1.5, -0.5]),
                                   torch.tensor([[0.5, 0.5], [0.2, 0.2]]),
                                   torch.tensor([float("nan"), 1.0])])
def test_entropy_refuses_what_is_not_a_probability_vector(probs):
    with pytest.raises(ValueError, match=r"^probs\b"):
        entropy(probs)


def test_soft_targets_refuse_non_finite_logits():
    with pytest.raises(ValueError, match=r"^logits must be finite"):
        soft_targets(torch.tensor([[1.0, float("inf")]]), 2.0)


def test_shift_bias_works_on_a_freshly_pruned_model():
    net = mlp(8, seed=0)
    prune.l1_unstructured(net.fc2, "weight", amount=0.5)  # .weight: a non-leaf tensor
    before = state(net)
    shifted = shift_bias(net, 3, 2.0)
    assert same_state(state(net), before)
    assert shifted.fc2.bias[3].item() == pytest.approx(net.fc2.bias[3].item() + 2.0)


def test_distill_refuses_augment_and_non_finite_teacher_logits(small, teacher):
    student = mlp(8, seed=0)
    before = state(student)
    with pytest.raises(ValueError, match=r"^augment\b.*unshifted"):
        run_distill(student, teacher, small, augment=True)
    z = logits_of(teacher, small.X_train)
    z[7, 2] = float("nan")
    with pytest.raises(ValueError, match=r"^logits must be finite"):
        run_distill(student, teacher, small, logits=z)
    with pytest.raises(ValueError, match=r"^logits must have shape \(300, 10\)"):
        run_distill(student, teacher, small, logits=z[:, :5])
    assert same_state(state(student), before)


def test_distill_that_diverges_says_so_and_restores_the_student(small, teacher):
    student = mlp(8, seed=0)
    before = state(student)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch \d+; likely cause lr"):
        run_distill(student, teacher, small, lr=1e30)
    assert same_state(state(student), before)


def test_students_wait_for_another_kernel_and_load_what_it_trained(
        small, teacher, isolated_cache, no_kit_teacher, monkeypatch):
    """train_students takes each missing student's lock, then looks again: a
    student another process saved meanwhile is loaded, not trained twice."""
    done, _ = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    files = checkpoints_in(isolated_cache)
    saved = {p: p.read_bytes() for p in files}
    for p in files:
        p.unlink()  # as if the other kernel had not finished yet
    taken = []
    real_lock = ex.checkpoint_lock

    @contextlib.contextmanager
    def lock_then_other_kernel_saves(name, config):
        with real_lock(name, config):
            taken.append(name)
            for p, blob in saved.items():  # the other kernel finishes while we wait
                p.write_bytes(blob)
            yield

    monkeypatch.setattr(ex, "checkpoint_lock", lock_then_other_kernel_saves)
    monkeypatch.setattr(ex, "_train_stack", lambda *a: pytest.fail("trained a second time"))
    net, rec = get_student(small, T=3.0, alpha=0.7, teacher=teacher, recipe=TINY)
    assert taken == ["student"] and rec["cached"] is True
    assert same_state(state(net), state(done))
