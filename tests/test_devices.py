"""Where the kit's models run: ``train``, ``logits_of``, ``shrink`` and
``distill`` leave their results on the device asked for (or the model's own)
and compute there what a CPU twin computes, to rounding.

The CUDA tests run only where a GPU is present (skipped elsewhere); the
``meta`` test runs everywhere: a meta tensor has a device but no values, so
it checks where ``logits_of`` sends the inputs without any arithmetic.
"""
from __future__ import annotations

import pytest
import torch

from helpers.distillation import distill
from helpers.models import clone, mlp
from helpers.pruning import neuron_prune, shrink
from helpers.training import logits_of, train

from conftest import close_state, state, synthetic

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
# float32 on the GPU sums in another order than on the CPU: a few epochs of
# Adam leave the weights within this of each other.
ATOL = 1e-4


def on_cpu(model: torch.nn.Module) -> dict:
    return {k: v.cpu() for k, v in state(model).items()}


def devices(model: torch.nn.Module) -> set[str]:
    return {t.device.type for t in model.state_dict().values()}


def test_logits_of_sends_the_inputs_to_the_model_s_device():
    """A model on ``meta`` and inputs on the CPU: the logits are on ``meta``,
    one row per input (moving X is logits_of's job, not the caller's)."""
    X = synthetic(8, 4).X_train
    out = logits_of(mlp(8, seed=0).to("meta"), X, batch_size=3)
    assert out.device.type == "meta" and tuple(out.shape) == (8, 10)


@CUDA
def test_train_on_cuda_ends_there_and_matches_a_cpu_twin():
    data = synthetic(48, 24)
    kw = {"epochs": 2, "batch_size": 16, "seed": 0}
    cpu_net, gpu_net = mlp(8, seed=0), mlp(8, seed=0)
    cpu_hist = train(cpu_net, data, device="cpu", **kw)
    gpu_hist = train(gpu_net, data, device="cuda", **kw)
    assert devices(gpu_net) == {"cuda"} and devices(cpu_net) == {"cpu"}
    assert close_state(on_cpu(gpu_net), on_cpu(cpu_net), atol=ATOL)
    for g, c in zip(gpu_hist, cpu_hist):
        assert g["train_loss"] == pytest.approx(c["train_loss"], rel=1e-4)
        assert g["val_loss"] == pytest.approx(c["val_loss"], rel=1e-4)


@CUDA
def test_logits_of_a_cuda_model_are_on_cuda_and_match_the_cpu():
    data = synthetic(48, 24)
    net = mlp(8, seed=0)
    want = logits_of(net, data.X_val)
    got = logits_of(clone(net).to("cuda"), data.X_val, batch_size=7)  # X stays on the CPU
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), want, atol=1e-5, rtol=0)


@CUDA
def test_shrink_of_a_cuda_model_stays_on_cuda_with_the_masked_logits():
    X = synthetic(48, 24).X_val
    masked = neuron_prune(mlp(8, seed=2), 0.5)
    small_cpu = shrink(masked)
    small_gpu = shrink(clone(masked).to("cuda"))
    assert devices(small_gpu) == {"cuda"} and small_gpu.hidden == small_cpu.hidden == (4,)
    assert close_state(on_cpu(small_gpu), on_cpu(small_cpu), atol=0)
    with torch.no_grad():
        torch.testing.assert_close(small_gpu(X.cuda()).cpu(), masked(X), atol=1e-5, rtol=0)


@CUDA
@pytest.mark.parametrize("teacher_on, student_on", [("cpu", "cuda"), ("cuda", "cpu")])
def test_distill_across_devices_matches_a_cpu_run(teacher, small, teacher_on, student_on):
    """The teacher answers where it lives; its logits go to the student's
    device. Either way round, the student matches one distilled on the CPU."""
    kw = {"T": 4.0, "alpha": 0.9, "epochs": 1, "seed": 0}
    ref = mlp(8, seed=5)
    distill(ref, teacher, small, device="cpu", **kw)
    student = mlp(8, seed=5)
    distill(student, clone(teacher).to(teacher_on), small, device=student_on, **kw)
    assert devices(student) == {student_on}
    assert close_state(on_cpu(student), on_cpu(ref), atol=ATOL)
