"""Tests for helpers.models: shapes, parameter counts, forward pass, seeding, configs;
and the source article's code (helpers.article)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from helpers import article
from helpers.models import (MLP, Ensemble, MLPStack, SmallCNN, baseline_mlp, clone,
                            make_permanent, mlp, small_cnn)

from conftest import same_state, state


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return same_state(state(a), state(b))


def test_baseline_layers_and_parameter_count():
    net = baseline_mlp()
    assert isinstance(net, MLP)
    assert (net.fc1.in_features, net.fc1.out_features) == (784, 128)
    assert (net.fc2.in_features, net.fc2.out_features) == (128, 10)
    assert net.fc1.weight.shape == (128, 784) and net.fc1.bias.shape == (128,)
    assert net.fc2.weight.shape == (10, 128) and net.fc2.bias.shape == (10,)
    assert not hasattr(net, "fc3")
    # fc1: 784*128 weights + 128 biases; fc2: 128*10 weights + 10 biases
    expected = 784 * 128 + 128 + 128 * 10 + 10
    assert expected == 101_770
    assert n_params(net) == expected
    names = [n for n, _ in net.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (5, 784), (1, 1, 28, 28)])
def test_baseline_output_shape(shape):
    net = baseline_mlp()
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 10)


def test_mlp_with_two_hidden_layers_has_three_layers():
    net = mlp([64, 32])
    assert [(fc.in_features, fc.out_features) for fc in net.layers()] == [(784, 64), (64, 32), (32, 10)]
    assert net.fc1.weight.shape == (64, 784)
    assert net.fc2.weight.shape == (32, 64)
    assert net.fc3.weight.shape == (10, 32)
    assert not hasattr(net, "fc4")
    assert n_params(net) == 784 * 64 + 64 + 64 * 32 + 32 + 32 * 10 + 10
    assert net(torch.randn(3, 1, 28, 28)).shape == (3, 10)


def test_mlp_single_int_hidden():
    net = mlp(16)
    assert [(fc.in_features, fc.out_features) for fc in net.layers()] == [(784, 16), (16, 10)]


def test_baseline_forward_equals_hand_computation():
    net = baseline_mlp(seed=3)
    x = torch.randn(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    flat = x.reshape(7, 784)
    W1, b1 = net.fc1.weight.detach(), net.fc1.bias.detach()
    W2, b2 = net.fc2.weight.detach(), net.fc2.bias.detach()
    want = torch.clamp(flat @ W1.T + b1, min=0) @ W2.T + b2
    with torch.no_grad():
        got = net(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_deep_mlp_forward_equals_hand_computation():
    net = mlp([64, 32], seed=1)
    x = torch.randn(4, 784, generator=torch.Generator().manual_seed(1))
    W = [(fc.weight.detach(), fc.bias.detach()) for fc in (net.fc1, net.fc2, net.fc3)]
    h = torch.clamp(x @ W[0][0].T + W[0][1], min=0)
    h = torch.clamp(h @ W[1][0].T + W[1][1], min=0)
    want = h @ W[2][0].T + W[2][1]
    with torch.no_grad():
        got = net(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("factory", [
    lambda s: baseline_mlp(seed=s),
    lambda s: mlp([20, 10], seed=s),
    lambda s: small_cnn(seed=s, channels=(4, 8), hidden=16),
], ids=["baseline", "mlp", "cnn"])
def test_same_seed_same_weights_other_seed_other_weights(factory):
    a, b, c = factory(5), factory(5), factory(6)
    assert same_weights(a, b)
    sa, sc = a.state_dict(), c.state_dict()
    assert all(not torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.parametrize("factory", [
    lambda: baseline_mlp(seed=2),
    lambda: mlp([8, 8], seed=0),
    lambda: small_cnn(seed=1),
], ids=["baseline", "mlp", "cnn"])
def test_building_does_not_touch_the_global_rng(factory):
    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    factory()
    assert torch.equal(torch.get_rng_state(), before)
    # and so the next global draw is the one the seed promises
    expected = torch.rand(3, generator=torch.Generator().manual_seed(1234))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("shape", [(2, 1, 28, 28), (6, 1, 28, 28)])
def test_small_cnn_output_shape(shape):
    net = small_cnn()
    assert isinstance(net, SmallCNN)
    assert net(torch.randn(*shape)).shape == (shape[0], 10)


def test_small_cnn_layer_shapes():
    net = small_cnn(channels=(4, 6), hidden=20)
    assert net.conv1.weight.shape == (4, 1, 3, 3)
    assert net.conv2.weight.shape == (6, 4, 3, 3)
    assert net.fc1.weight.shape == (20, 6 * 7 * 7)
    assert net.fc2.weight.shape == (10, 20)


def test_config_round_trips_through_json():
    """A model's config is part of its checkpoint key: it must survive JSON unchanged."""
    for model in (baseline_mlp(), mlp([5, 6]), small_cnn(channels=(2, 3), hidden=4)):
        assert json.loads(json.dumps(model.config)) == model.config


@pytest.mark.parametrize("call, word", [
    (lambda: mlp(0), "hidden"),
    (lambda: mlp([16, 0]), "hidden"),
    (lambda: mlp(-4), "hidden"),
    (lambda: mlp([]), "hidden"),
    (lambda: mlp(16, seed=-1), "seed"),
    (lambda: baseline_mlp(seed=-1), "seed"),
    (lambda: small_cnn(seed=-1), "seed"),
    (lambda: small_cnn(hidden=0), "hidden"),
    (lambda: small_cnn(channels=(0, 4)), "channels"),
], ids=["hidden0", "hidden-list-0", "hidden-neg", "hidden-empty", "mlp-seed", "baseline-seed",
        "cnn-seed", "cnn-hidden", "cnn-channels"])
def test_bad_arguments_raise_value_error(call, word):
    with pytest.raises(ValueError, match=word):
        call()


# --- the source article's code, reproduced (helpers.article) --------------------------

def test_article_shrink_step_scales_rows_and_zeroes_nothing():
    w = mlp(16, seed=3).fc1.weight.detach().clone()
    before = w.clone()
    article.shrink_step_(w, lam=0.01)
    # the step written out: w - lam * sign(w) * |w| / max|w| per row
    expected = before - 0.01 * torch.sign(before) * before.abs() / before.abs().amax(1, keepdim=True)
    assert torch.allclose(w, expected, atol=1e-7)
    assert int((w == 0).sum()) == int((before == 0).sum()) == 0


def test_article_distillation_ignores_the_teacher(embedded):
    small = embedded.__class__(**{**embedded.__dict__, "X_train": embedded.X_train[:256],
                                  "y_train": embedded.y_train[:256]})
    students = [article.distill_as_written(mlp(8, seed=0), mlp(8, seed=s), small, epochs=1)
                for s in (1, 2)]
    for a, b in zip(students[0].parameters(), students[1].parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("call, word", [
    (lambda a: a.shrink_step_(torch.ones(2, 2), lam=0), "lam"),
    (lambda a: a.unused_threshold(torch.ones(2, 2), lam=-1), "lam"),
    (lambda a: a.per_sample_loader(torch.zeros(2, 28, 28, dtype=torch.uint8),
                                   torch.zeros(2), batch_size=0), "batch_size"),
    (lambda a: a.train_as_written(mlp(4), [], lr=0), "lr"),
])
def test_article_helpers_reject_bad_arguments(call, word):
    with pytest.raises(ValueError, match=word):
        call(article)


def test_mlp_stack_computes_each_members_logits():
    members = [mlp((32, 16), seed=s) for s in range(3)]
    stack = MLPStack(members)
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    out = stack(x)  # one batch for all members
    assert out.shape == (3, 5, 10)
    per_member = torch.randn(3, 5, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    out2 = stack(per_member)  # one batch each
    for m, net in enumerate(members):
        assert torch.allclose(out[m], net(x), atol=1e-6)
        assert torch.allclose(out2[m], net(per_member[m]), atol=1e-6)
        back = stack.member(m)
        assert all(torch.equal(a, b) for a, b in zip(back.parameters(), net.parameters()))
    with pytest.raises(ValueError, match="members"):
        MLPStack([mlp(8), mlp(9)])
    with pytest.raises(ValueError, match="members"):
        MLPStack([])


def test_ensemble_averages_its_members_logits():
    members = [mlp(8, seed=s) for s in range(3)]
    x = torch.randn(4, 1, 28, 28)
    want = sum(m(x) for m in members) / 3
    assert torch.allclose(Ensemble(members)(x), want, atol=1e-6)
    with pytest.raises(ValueError, match="members"):
        Ensemble([])


# --- bad input gets a clear answer (issue 19) ---------------------------------------

@pytest.mark.parametrize("call, word", [
    (lambda: mlp(1.5), "hidden"),
    (lambda: mlp("128"), "hidden"),
    (lambda: mlp([16, 2.5]), "hidden"),
    (lambda: small_cnn(channels=(16,)), "channels"),
    (lambda: small_cnn(channels=16), "channels"),
    (lambda: small_cnn(channels=(16, 32, 64)), "channels"),
    (lambda: mlp(8, seed=2**32), "seed"),
    (lambda: small_cnn(seed=True), "seed"),
])
def test_more_bad_arguments_raise_value_error_naming_them(call, word):
    with pytest.raises(ValueError, match=rf"^{word}"):
        call()


def test_stack_member_leaves_the_global_rng_alone_and_keeps_the_dtype():
    stack = MLPStack([mlp(8, seed=s) for s in (0, 1)])
    torch.manual_seed(7)
    before = torch.get_rng_state().clone()
    net = stack.member(1)
    assert torch.equal(torch.get_rng_state(), before)
    assert same_weights(net, mlp(8, seed=1))
    assert stack.double().member(0).fc1.weight.dtype == torch.float64
    for m in (2, -1, 0.5):
        with pytest.raises(ValueError, match=r"^m\b"):
            stack.member(m)


def test_clone_and_make_permanent_see_a_pruned_model_moved_after_pruning():
    net = baseline_mlp()
    prune.l1_unstructured(net.fc1, "weight", amount=0.5)
    net.double()  # .weight is a plain attribute: still float32 until the next forward pass
    for copy_ in (clone(net), make_permanent(net)):
        assert copy_.fc1.weight.dtype == torch.float64
        assert torch.equal(copy_.fc1.weight, net.fc1.weight_orig * net.fc1.weight_mask)
        x = torch.randn(3, 1, 28, 28, dtype=torch.float64)
        assert torch.equal(copy_(x), net(x))
    with pytest.raises(TypeError, match=r"^model\b"):
        clone({"fc1.weight": torch.zeros(2)})
