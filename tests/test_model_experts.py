"""ReMoKE experts and gates, and MuJoD's attention fusion, against their formulas."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from momok.models.experts import ModalityExperts, RelationTemperature, gates, mix
from momok.models.fusion import AttentionFusion

D, K, N = 5, 4, 7


def _experts(**kwargs):
    module = ModalityExperts(D, K, generator=torch.Generator().manual_seed(0), **kwargs)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # non-zero gates and biases
        module.gate_weight.copy_(torch.randn(D, K, generator=g))
        module.noise_weight.copy_(torch.randn(D, K, generator=g))
        module.bias.copy_(torch.randn(K, D, generator=g))
    return module


def test_experts_are_affine_maps():
    module = _experts().eval()
    x = torch.randn(N, D)
    h = module.experts(x)
    for k in range(K):
        torch.testing.assert_close(h[:, k], x @ module.weight[k] + module.bias[k])


def test_gates_sum_to_one_and_sharpen_as_temperature_falls():
    module = _experts().eval()
    logits = module.gate_logits(torch.randn(N, D))
    previous_max = None
    for tau in (1.0, 0.7, 0.4, 0.1):
        g = gates(logits, torch.full((N,), tau))
        torch.testing.assert_close(g.sum(-1), torch.ones(N))
        torch.testing.assert_close(g, torch.softmax(logits / tau, dim=-1))
        top = g.max(-1).values
        if previous_max is not None:
            assert torch.all(top > previous_max)
        previous_max = top
    torch.testing.assert_close(gates(logits, None), torch.softmax(logits, -1))


def test_mix_is_the_gate_weighted_sum():
    g = torch.softmax(torch.randn(N, K), -1)
    h = torch.randn(N, K, D)
    torch.testing.assert_close(mix(g, h), sum(g[:, k : k + 1] * h[:, k] for k in range(K)))


def test_gate_noise_only_while_training_and_when_enabled():
    x = torch.randn(N, D)
    noisy = _experts(gate_noise=True)
    clean = x @ noisy.gate_weight
    torch.manual_seed(0)
    drawn = noisy.train().gate_logits(x)
    torch.manual_seed(0)
    expected = clean + torch.randn(N, K) * F.softplus(x @ noisy.noise_weight)
    torch.testing.assert_close(drawn, expected)
    torch.testing.assert_close(noisy.train().gate_logits(x, noise=False), clean)
    torch.testing.assert_close(noisy.eval().gate_logits(x), clean)
    torch.testing.assert_close(_experts(gate_noise=False).train().gate_logits(x), clean)


def test_expert_dropout_applies_to_expert_inputs_while_training():
    module = _experts(dropout=0.5)
    x = torch.randn(N, D)
    torch.manual_seed(0)
    h = module.train().experts(x)
    torch.manual_seed(0)
    torch.testing.assert_close(h, torch.einsum("nd,kde->nke", F.dropout(x, 0.5, True), module.weight) + module.bias)
    torch.testing.assert_close(module.eval().experts(x), torch.einsum("nd,kde->nke", x, module.weight) + module.bias)


def test_relation_temperature():
    temperature = RelationTemperature(6)
    with torch.no_grad():
        temperature.theta.copy_(torch.linspace(-2, 2, 6))
    relations = torch.tensor([5, 0, 3])
    torch.testing.assert_close(temperature(relations), torch.sigmoid(torch.linspace(-2, 2, 6))[relations])
    disabled = RelationTemperature(6, enabled=False)
    assert disabled(relations) is None and not list(disabled.parameters())


def _inputs(keys, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(N, dim, generator=g) for k in keys}


@pytest.mark.parametrize("kind", ["mlp", "linear"])
def test_attention_fusion_formula(kind):
    keys = ["s", "v", "t"]
    fusion = AttentionFusion(keys, D, 3, kind=kind, generator=torch.Generator().manual_seed(0))
    inputs = _inputs(keys, D)
    fused, alpha = fusion(inputs)
    projected = [fusion.projections[k](inputs[k]) for k in keys]
    logits = torch.stack([p @ fusion.attention for p in projected], -1)
    expected_alpha = torch.exp(logits) / torch.exp(logits).sum(-1, keepdim=True)
    torch.testing.assert_close(alpha, expected_alpha)
    torch.testing.assert_close(fused, sum(expected_alpha[:, m : m + 1] * projected[m] for m in range(3)))
    if kind == "mlp":
        first, _, second = fusion.projections["v"]
        torch.testing.assert_close(projected[1], second(torch.relu(first(inputs["v"]))))


def test_uniform_fusion_without_adaptive_weights():
    keys = ["s", "t"]
    fusion = AttentionFusion(keys, D, D, adaptive=False)
    inputs = _inputs(keys, D)
    fused, alpha = fusion(inputs)
    torch.testing.assert_close(alpha, torch.full((N, 2), 0.5))
    torch.testing.assert_close(fused, (fusion.projections["s"](inputs["s"]) + fusion.projections["t"](inputs["t"])) / 2)


def test_factorised_linear_fusion_equals_fusing_the_mixtures():
    keys = ["s", "v", "t"]
    fusion = AttentionFusion(keys, D, 4, kind="linear", generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    experts = {k: torch.randn(N, K, D, generator=g) for k in keys}
    gate_weights = torch.softmax(torch.randn(N, 3, K, generator=g), -1)
    mixtures = {k: mix(gate_weights[:, m], experts[k]) for m, k in enumerate(keys)}
    direct, direct_alpha = fusion(mixtures)
    fused, alpha = fusion.fuse_mixtures(*fusion.project_experts(experts), gate_weights)
    torch.testing.assert_close(fused, direct)
    torch.testing.assert_close(alpha, direct_alpha)
    with pytest.raises(ValueError):
        AttentionFusion(keys, D, 4, kind="mlp").project_experts(experts)


@pytest.mark.parametrize("adaptive", [True, False])
def test_guided_mlp_scores_equal_pushing_each_groups_candidates_through_the_mlp(adaptive):
    """Values and every gradient, in float64, over several chunks of candidates (the last one partial)."""
    keys, counts = ["s", "v", "t"], [2, 1, 3]
    fusion = AttentionFusion(keys, D, 4, kind="mlp", adaptive=adaptive,
                             generator=torch.Generator().manual_seed(0)).double()
    g = torch.Generator().manual_seed(1)
    experts = {k: torch.randn(N, K, D, generator=g, dtype=torch.float64, requires_grad=True) for k in keys}
    # gates from a softmax: the factorisation uses Σ_k g_k = 1 (its derivative off that simplex differs)
    gate_logits = torch.randn(len(counts), N, 3, K, generator=g, dtype=torch.float64, requires_grad=True)
    gate_weights = torch.softmax(gate_logits, -1)
    queries = torch.randn(sum(counts), 4, generator=g, dtype=torch.float64, requires_grad=True)
    inputs = [queries, gate_logits, *experts.values(), *fusion.parameters()]

    got = fusion.score_guided_mlp(queries, fusion.first_layer(experts), gate_weights.permute(0, 3, 2, 1), counts,
                                  entity_chunk=3)
    rows, start = [], 0
    for u, n in enumerate(counts):  # the reference: each group's candidates, pushed through the fusion
        mixtures = {k: mix(gate_weights[u, :, m], experts[k]) for m, k in enumerate(keys)}
        fused, _ = fusion(mixtures)
        rows.append(queries[start : start + n] @ fused.T)
        start += n
    expected = torch.cat(rows)
    torch.testing.assert_close(got, expected)
    grad = torch.randn(expected.shape, generator=g, dtype=torch.float64)
    for a, b in zip(torch.autograd.grad(got, inputs, grad, allow_unused=True, retain_graph=True),
                    torch.autograd.grad(expected, inputs, grad, allow_unused=True)):
        if b is None:
            assert a is None or not a.any()
        else:
            torch.testing.assert_close(a, b)
