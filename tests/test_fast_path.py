"""The fast path of MoMoK (grouped Tucker contraction, factorised candidate fusion, bulk ranking) against
the deliberately straightforward reference of the benchmarks (benchmarks/reference.py): same scores,
losses and gradients to float tolerance, on small sizes."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from benchmarks import reference
from momok.evaluation import FilterIndex, filtered_ranks
from momok.models.base import TrainBatch
from momok.models.momok import MoMoK, MoMoKOptions

E, R, B = 23, 4, 40

#: the benchmark's two presets, at toy sizes
PAPER = MoMoKOptions(dim=7, relation_dim=5, num_experts=3, club_hidden_dim=6)
AUTHORS = replace(
    PAPER, loss="bce", candidate_relation_guidance=False, candidate_gate_noise=True, club_pairs="random",
    club_logvar_term=False, joint_score="mean_sigmoid",
)
PRESETS = {
    "paper": PAPER,
    "authors": AUTHORS,
    "linear_fusion": replace(PAPER, fusion_projection="linear"),
    "no_temperature": replace(PAPER, relation_temperature=False, adaptive_fusion=False),
    "no_recompute": replace(PAPER, recompute_candidates=False),
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(options: MoMoKOptions, seed: int = 1) -> MoMoK:
    g = torch.Generator().manual_seed(0)
    image_mask = torch.rand(E, generator=g) > 0.2
    features = {
        "image": SimpleNamespace(features=torch.randn(E, 9, generator=g), mask=image_mask, metadata={}),
        "text": SimpleNamespace(features=torch.randn(E, 8, generator=g), mask=torch.ones(E, dtype=torch.bool),
                                metadata={}),
    }
    model = MoMoK(options, E, R, features, torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # non-uniform gates, temperatures and batch-norm statistics
        for experts in model.experts.values():
            experts.gate_weight.copy_(torch.randn(experts.gate_weight.shape, generator=g))
            experts.noise_weight.copy_(torch.randn(experts.noise_weight.shape, generator=g) * 0.1)
        if model.temperature.theta is not None:
            model.temperature.theta.copy_(torch.randn(2 * R, generator=g))
        for scorer in model.scorers.values():
            for bn in (scorer.bn0, scorer.bn1):
                bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.1)
                bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) + 0.5)
    return model


def _batch() -> TrainBatch:
    g = torch.Generator().manual_seed(5)
    heads = torch.randint(0, E, (B,), generator=g)
    relations = torch.randint(0, 2 * R, (B,), generator=g)
    tails = torch.randint(0, E, (B,), generator=g)
    labels = torch.zeros(B, E, dtype=torch.bool)
    labels[torch.arange(B), tails] = True
    labels[torch.arange(B), (tails * 7) % E] = True
    return TrainBatch(heads, relations, tails, labels)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_eval_scores_agree(preset):
    model = _model(PRESETS[preset]).eval()
    batch = _batch()
    with torch.no_grad():
        fast = model.scores(batch.heads, batch.relations)
        slow = reference.reference_joint_scores(model, batch.heads, batch.relations)
    assert set(fast) == set(slow)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_training_loss_and_gradients_agree(preset):
    """Training mode: batch statistics, gate noise, input/output dropouts and ExID draws all on, in the
    same order; the per-query core dropout off (the two draw its masks differently)."""
    options = replace(PRESETS[preset], hidden_dropout1=0.0)
    batch = _batch()
    fast_model, slow_model = _model(options).train(), _model(options).train()
    torch.manual_seed(11)
    fast_loss, _ = fast_model.loss(batch)
    fast_loss.backward()
    torch.manual_seed(11)
    slow_loss = reference.reference_loss(slow_model, batch)
    slow_loss.backward()
    torch.testing.assert_close(fast_loss, slow_loss, rtol=1e-5, atol=1e-6)
    slow_params = dict(slow_model.named_parameters())
    checked = 0
    for name, p in fast_model.named_parameters():
        q = slow_params[name]
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)
            checked += 1
    assert checked > 20
    # the same batch-norm running statistics afterwards (same batch statistics)
    for name, buffer in fast_model.named_buffers():
        torch.testing.assert_close(buffer, dict(slow_model.named_buffers())[name], msg=name)
    # the estimators' loss and gradients
    for model in (fast_model, slow_model):
        model.zero_grad(set_to_none=True)
    torch.manual_seed(12)
    fast_estimator = fast_model.estimator_loss(batch)
    fast_estimator.backward()
    slow_estimator = reference.reference_estimator_loss(slow_model, batch)
    slow_estimator.backward()
    torch.testing.assert_close(fast_estimator, slow_estimator, rtol=1e-5, atol=1e-6)
    for p, q in zip(fast_model.estimator_parameters(), slow_model.estimator_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6)


def test_core_dropout_is_on_in_both_and_same_size():
    """With the core dropout on, both paths drop core entries per query: losses differ from each other
    and from the dropout-free loss, but by amounts of the same size."""
    batch = _batch()
    losses = {}
    for name, p in (("off", 0.0), ("on", 0.4)):
        options = replace(PAPER, hidden_dropout1=p, input_dropout=0.0, hidden_dropout2=0.0, gate_noise=False,
                          exid_weight=0.0)
        torch.manual_seed(3)
        losses[name, "fast"] = float(_model(options).train().loss(batch)[0].detach())
        torch.manual_seed(3)
        losses[name, "slow"] = float(reference.reference_loss(_model(options).train(), batch).detach())
    assert losses["off", "fast"] == pytest.approx(losses["off", "slow"], rel=1e-5)
    assert losses["on", "fast"] != pytest.approx(losses["off", "fast"], rel=1e-4)
    assert losses["on", "slow"] != pytest.approx(losses["off", "slow"], rel=1e-4)


def test_bulk_ranks_agree_with_per_query_loop():
    g = torch.Generator().manual_seed(2)
    triples = torch.stack([torch.randint(0, E, (60,), generator=g), torch.randint(0, R, (60,), generator=g),
                           torch.randint(0, E, (60,), generator=g)], 1)
    scores = torch.randint(0, 5, (B, E), generator=g).float()  # many ties
    entities = triples[:B, 0]
    relations = triples[:B, 1] + R * (torch.arange(B) % 2)
    targets = torch.randint(0, E, (B,), generator=g)
    fast = filtered_ranks(scores, targets, FilterIndex(triples, E, R).known_mask(entities, relations)).realistic
    slow = reference.reference_ranks(scores, entities, relations, targets, reference.known_answers(triples, R))
    torch.testing.assert_close(fast, slow.float())



@pytest.mark.parametrize("preset", ["paper", "authors", "linear_fusion"])
def test_evaluation_cache_follows_parameter_updates(preset):
    """Eval-mode scores reuse the entity-side tables across batches, and an in-place parameter update
    (an optimiser step, a loaded checkpoint) is seen by the next call."""
    model = _model(PRESETS[preset]).eval()
    batch = _batch()
    with torch.no_grad():
        first = model.scores(batch.heads, batch.relations)["joint"]
        assert model._eval_cache  # filled
        again = model.scores(batch.heads[:7], batch.relations[:7])["joint"]
        torch.testing.assert_close(again, first[:7])
        model.experts["v"].weight.mul_(1.5)
        model.structure[3] += 1.0
        changed = model.scores(batch.heads, batch.relations)["joint"]
        expected = reference.reference_joint_scores(model, batch.heads, batch.relations)["joint"]
    torch.testing.assert_close(changed, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(changed, first)
    other = _model(PRESETS[preset], seed=9).eval()
    model.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.scores(batch.heads, batch.relations)["joint"],
                                   other.scores(batch.heads, batch.relations)["joint"])


def test_training_drops_the_evaluation_cache():
    model = _model(PAPER).eval()
    batch = _batch()
    with torch.no_grad():
        model.scores(batch.heads, batch.relations)
    assert model._eval_cache
    model.train()
    model.loss(batch)
    assert not model._eval_cache
