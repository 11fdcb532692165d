"""TuckerScorer's fast path against the Tucker formula written with einsum."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from momok.models.core_dropout import keep_mask
from momok.models.groups import RelationGroups
from momok.models.tucker import CORE_DROPOUT_MODES, TuckerScorer, grouped_matmul

D, DR, B, E, NREL = 6, 5, 12, 9, 4


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _inputs(seed=0):
    g = torch.Generator().manual_seed(seed)
    heads = torch.randn(B, D, generator=g)
    relation_table = torch.randn(NREL, DR, generator=g)
    relations = torch.tensor([2, 0, 2, 3, 0, 0, 2, 3, 3, 0, 2, 2])  # repeated, unsorted, relation 1 absent
    candidates = torch.randn(E, D, generator=g)
    return heads, relation_table, relations, candidates


def _scorer(mode, batch_norm=True, **dropouts):
    scorer = TuckerScorer(D, DR, batch_norm=batch_norm, core_dropout=mode,
                          generator=torch.Generator().manual_seed(1), **dropouts)
    if batch_norm:  # non-trivial running statistics and affine parameters
        g = torch.Generator().manual_seed(2)
        for bn in (scorer.bn0, scorer.bn1):
            bn.running_mean.copy_(torch.randn(D, generator=g))
            bn.running_var.copy_(torch.rand(D, generator=g) + 0.5)
            bn.weight.data.copy_(torch.randn(D, generator=g))
            bn.bias.data.copy_(torch.randn(D, generator=g))
    return scorer


def _bn_eval(bn, x):
    return (x - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias


def _bn_train(bn, x):
    mean, var = x.mean(0), x.var(0, unbiased=False)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias


def test_relation_groups_roundtrip():
    relations = torch.tensor([3, 1, 3, 0, 1, 1])
    groups = RelationGroups.of(relations)
    assert groups.relations.tolist() == [0, 1, 3]
    assert groups.counts == [1, 3, 2]
    assert torch.equal(groups.relations[groups.inverse], relations)
    values = torch.arange(6.0).unsqueeze(1)
    # each group sees exactly its own queries; the result comes back in query order
    seen = groups.map_groups(lambda u, rows: rows + 100 * u, values)
    assert torch.equal(seen.squeeze(1), torch.arange(6.0) + 100 * groups.inverse)


def test_grouped_matmul_matches_gather():
    heads, _, relations, _ = _inputs()
    mats = torch.randn(4, D, D)
    groups = RelationGroups.of(relations)
    expected = torch.einsum("bj,bjk->bk", heads, mats[groups.inverse])
    torch.testing.assert_close(grouped_matmul(heads, mats, groups), expected)


@pytest.mark.parametrize("mode", CORE_DROPOUT_MODES)
def test_eval_scores_match_einsum(mode):
    heads, table, relations, candidates = _inputs()
    scorer = _scorer(mode).eval()
    groups = RelationGroups.of(relations)
    scores = scorer(heads, table[groups.relations], groups) @ candidates.T
    x = _bn_eval(scorer.bn0, heads)
    hidden = torch.einsum("bi,ijk,bj->bk", table[relations], scorer.core, x)
    q = _bn_eval(scorer.bn1, hidden)
    expected = torch.einsum("bk,ek->be", q, candidates)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-5)
    # phi(h, r, t) = W x1 r x2 e_h x3 e_t for one triple, fully written out (no batch norm)
    plain = _scorer(mode, batch_norm=False).eval()
    phi = plain(heads[:1], table[relations[:1]], RelationGroups.of(relations[:1])) @ candidates[3]
    by_hand = sum(
        plain.core[i, j, k] * table[relations[0], i] * heads[0, j] * candidates[3, k]
        for i in range(DR) for j in range(D) for k in range(D)
    )
    torch.testing.assert_close(phi, by_hand.reshape(1), rtol=1e-5, atol=1e-5)


def test_per_query_train_matches_einsum_with_same_masks():
    heads, table, relations, candidates = _inputs()
    p0, p1, p2 = 0.3, 0.4, 0.5
    scorer = _scorer("per_query", input_dropout=p0, hidden_dropout1=p1, hidden_dropout2=p2).train()
    groups = RelationGroups.of(relations)
    torch.manual_seed(123)
    scores = scorer(heads, table[groups.relations], groups) @ candidates.T
    # reference: the per-query formula, masks drawn in the same order (input, core [B, d, d] for the
    # queries in relation-group order, output)
    torch.manual_seed(123)
    x = F.dropout(_bn_train(scorer.bn0, heads), p0, True)
    cores = torch.einsum("bi,ijk->bjk", table[relations], scorer.core)
    mask, scale = keep_mask((B, D, D), p1)
    cores = cores * mask[groups.restore] * scale
    hidden = torch.einsum("bjk,bj->bk", cores, x)
    q = F.dropout(_bn_train(scorer.bn1, hidden), p2, True)
    torch.testing.assert_close(scores, q @ candidates.T, rtol=1e-5, atol=1e-5)


def test_per_query_masks_are_independent():
    """A query's mask differs from another query's with the same core, also across chunks."""
    scorer = TuckerScorer(D, DR, input_dropout=0, hidden_dropout1=0.5, hidden_dropout2=0, batch_norm=False,
                          core_dropout="per_query", core_chunk_elements=D * D * 2)
    heads = torch.randn(1, D).expand(8, D)
    relations = torch.zeros(8, dtype=torch.long)
    groups = RelationGroups.of(relations)
    torch.manual_seed(0)
    out = scorer.train()(heads, torch.randn(1, DR), groups)
    assert len({tuple(row.tolist()) for row in out}) == 8


def test_per_relation_shares_one_mask_per_relation():
    heads = torch.randn(1, D).expand(6, D)
    relations = torch.tensor([0, 1, 0, 1, 0, 1])
    groups = RelationGroups.of(relations)
    table = torch.randn(2, DR)
    kwargs = dict(input_dropout=0, hidden_dropout1=0.5, hidden_dropout2=0, batch_norm=False)
    shared = TuckerScorer(D, DR, core_dropout="per_relation", **kwargs).train()
    torch.manual_seed(0)
    out = shared(heads, table, groups)
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[4]) and torch.equal(out[1], out[5])
    assert not torch.equal(out[0], out[1])
    # reference: one F.dropout over the [U, d, d] stack of contracted cores
    torch.manual_seed(0)
    cores = F.dropout(torch.einsum("ui,ijk->ujk", table, shared.core), 0.5, True)
    torch.testing.assert_close(out, torch.einsum("bj,bjk->bk", heads, cores[relations]))


def test_output_mode_is_dropout_on_the_product():
    heads, table, relations, _ = _inputs()
    scorer = _scorer("output", batch_norm=False, input_dropout=0, hidden_dropout1=0.4, hidden_dropout2=0).train()
    groups = RelationGroups.of(relations)
    torch.manual_seed(5)
    out = scorer(heads, table[groups.relations], groups)
    torch.manual_seed(5)
    expected = F.dropout(torch.einsum("bi,ijk,bj->bk", table[relations], scorer.core, heads), 0.4, True)
    torch.testing.assert_close(out, expected)


def test_gaussian_mode_matches_per_query_moments():
    """Fast dropout has the mean and variance of exact per-query core dropout (Monte Carlo, 4000 draws)."""
    n, p = 4000, 0.4
    head = torch.randn(1, D, generator=torch.Generator().manual_seed(3))
    heads = head.expand(n, D)
    relations = torch.zeros(n, dtype=torch.long)
    groups = RelationGroups.of(relations)
    rel = torch.randn(1, DR, generator=torch.Generator().manual_seed(4))
    kwargs = dict(input_dropout=0, hidden_dropout1=p, hidden_dropout2=0, batch_norm=False,
                  generator=torch.Generator().manual_seed(1))
    exact = TuckerScorer(D, DR, core_dropout="per_query", **kwargs).train()
    fast = TuckerScorer(D, DR, core_dropout="gaussian", **kwargs).train()
    fast.load_state_dict(exact.state_dict())
    torch.manual_seed(0)
    a, b = exact(heads, rel, groups), fast(heads, rel, groups)
    core = exact.contract(rel)[0]
    mean = head[0] @ core
    var = (head[0].square() @ core.square()) * p / (1 - p)
    scale = var.sqrt() / n**0.5
    for sample in (a, b):
        assert torch.all((sample.mean(0) - mean).abs() < 5 * scale)
        assert torch.all((sample.var(0) / var - 1).abs() < 0.15)
