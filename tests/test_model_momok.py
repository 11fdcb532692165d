"""The assembled MoMoK model: grouped scoring against explicit per-query formulas, losses, gradients,
ablation switches, missing modalities and the registry entry."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from momok.errors import ConfigError
from momok.models.base import TrainBatch
from momok.models.experts import gates, mix
from momok.models.momok import MoMoK, MoMoKOptions
from momok.models import registry
from momok.models.registry import BuildContext

E, R, B = 11, 3, 10
MISSING_IMAGE = (2, 7)  # entities without an image


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _features(seed=0):
    g = torch.Generator().manual_seed(seed)
    image_mask = torch.ones(E, dtype=torch.bool)
    image_mask[list(MISSING_IMAGE)] = False
    return {
        "image": SimpleNamespace(features=torch.randn(E, 12, generator=g), mask=image_mask, metadata={}),
        "text": SimpleNamespace(
            features=torch.randn(E, 8, generator=g), mask=torch.ones(E, dtype=torch.bool), metadata={}
        ),
    }


BASE = MoMoKOptions(dim=6, relation_dim=4, num_experts=3, club_hidden_dim=5)
NO_DROPOUT = dict(input_dropout=0.0, hidden_dropout1=0.0, hidden_dropout2=0.0)


def _model(seed=1, features=None, **changes) -> MoMoK:
    model = MoMoK(replace(BASE, **changes), E, R, features or _features(), torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # non-trivial gates and temperatures (the initial ones are uniform/equal)
        for experts in model.experts.values():
            experts.gate_weight.copy_(torch.randn(experts.gate_weight.shape, generator=g))
            experts.noise_weight.copy_(torch.randn(experts.noise_weight.shape, generator=g) * 0.1)
        if model.temperature.theta is not None:
            model.temperature.theta.copy_(torch.randn(2 * R, generator=g))
    return model


def _queries(seed=0):
    g = torch.Generator().manual_seed(seed)
    heads = torch.randint(0, E, (B,), generator=g)
    heads[0] = MISSING_IMAGE[0]
    relations = torch.tensor([0, 4, 4, 1, 0, 5, 3, 4, 0, 2])  # originals and inverses, repeated
    tails = torch.randint(0, E, (B,), generator=g)
    return heads, relations, tails


def _labels(tails):
    labels = torch.zeros(B, E, dtype=torch.bool)
    labels[torch.arange(B), tails] = True
    labels[torch.arange(B), (tails + 1) % E] = True
    return labels


def explicit_scores(model: MoMoK, head: int, relation: int, guided: bool = True) -> dict[str, torch.Tensor]:
    """Scores ``[E]`` of the single query (head, relation) from the paper's formulas, in eval mode, no
    batch norm: every candidate encoded under the query's relation temperature (guided) or τ = 1."""
    with torch.no_grad():
        inputs = model.modality_inputs()
        tau = model.temperature(torch.tensor([relation]))
        tau_candidates = tau if guided else None
        query, cands = {}, {}
        for k in model.modality_keys:
            h = model.experts[k].experts(inputs[k])
            logits = inputs[k] @ model.experts[k].gate_weight
            query[k] = mix(gates(logits[head : head + 1], tau), h[head : head + 1])[0]
            cands[k] = mix(gates(logits, tau_candidates), h)
        keys = model.modality_keys
        projected_q = torch.stack([model.entity_fusion.projections[k](query[k]) for k in keys])
        alpha = torch.softmax(projected_q @ model.entity_fusion.attention, 0)
        query["j"] = (alpha[:, None] * projected_q).sum(0)
        projected_c = torch.stack([model.entity_fusion.projections[k](cands[k]) for k in keys], 1)  # [E, M, d]
        alpha_c = torch.softmax(projected_c @ model.entity_fusion.attention, 1)
        cands["j"] = (alpha_c[..., None] * projected_c).sum(1)
        rel = {k: model.relation_embeddings[k][relation] for k in keys}
        projected_r = torch.stack([model.relation_fusion.projections[k](rel[k]) for k in keys])
        beta = torch.softmax(projected_r @ model.relation_fusion.attention, 0)
        rel["j"] = (beta[:, None] * projected_r).sum(0)
        return {
            k: torch.einsum("i,j,ijk,ek->e", rel[k], query[k], model.scorers[k].core, cands[k])
            for k in model.score_keys
        }


@pytest.mark.parametrize("fusion_projection", ["mlp", "linear"])
@pytest.mark.parametrize("guided", [True, False])
def test_grouped_scores_equal_explicit_per_query_scores(fusion_projection, guided):
    model = _model(fusion_projection=fusion_projection, candidate_relation_guidance=guided, batch_norm=False).eval()
    heads, relations, _ = _queries()
    scores = model.scores(heads, relations)
    assert set(scores) == {"s", "v", "t", "j", "joint"}
    for b in range(B):
        expected = explicit_scores(model, int(heads[b]), int(relations[b]), guided)
        for k in model.score_keys:
            torch.testing.assert_close(scores[k][b], expected[k], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(scores["joint"], sum(scores[k] for k in "svtj"))


@pytest.mark.parametrize("joint_score", ["sum", "mean_sigmoid"])
@pytest.mark.parametrize("guided", [True, False])
@pytest.mark.parametrize("joint_training", [True, False])
@pytest.mark.parametrize("fusion_projection", ["mlp", "linear"])
def test_ranking_scores_equal_the_combined_explicit_scores(joint_score, guided, joint_training, fusion_projection):
    """``ranking_scores`` (validation: the joint score alone, accumulated in place) against the joint score
    combined from the per-query formulas, against ``scores()["joint"]``, and the same filtered ranks."""
    from momok.evaluation import filtered_ranks

    model = _model(joint_score=joint_score, candidate_relation_guidance=guided, joint_training=joint_training,
                   fusion_projection=fusion_projection, batch_norm=False).eval()
    heads, relations, tails = _queries()
    with torch.no_grad():
        fast = model.ranking_scores(heads, relations)
        full = model.scores(heads, relations)["joint"]
    keys = model.score_keys if joint_training else ["j"]
    for b in range(B):
        explicit = explicit_scores(model, int(heads[b]), int(relations[b]), guided)
        terms = [explicit[k] if joint_score == "sum" else torch.sigmoid(explicit[k]) for k in keys]
        expected = sum(terms) if joint_score == "sum" else sum(terms) / len(keys)
        torch.testing.assert_close(fast[b], expected, rtol=1e-4, atol=1e-5)
    if joint_score == "mean_sigmoid":
        assert torch.equal(fast, full)  # the same operations in the same order
    torch.testing.assert_close(fast, full, rtol=1e-5, atol=1e-6)
    known = _labels(tails)
    for a, b in zip(filtered_ranks(fast, tails, known), filtered_ranks(full, tails, known)):
        assert torch.equal(a, b)
    model.train()  # training mode: scores()["joint"] itself
    torch.manual_seed(0)
    train_scores = model.ranking_scores(heads, relations)
    torch.manual_seed(0)
    assert torch.equal(train_scores, model.scores(heads, relations)["joint"])


def test_inverse_relation_query_scores_the_head():
    """Head prediction (?, r, t) is the tail query (t, r + R): its score of h is the inverse formula."""
    model = _model(batch_norm=False).eval()
    h, r, t = 4, 1, 9
    scores = model.scores(torch.tensor([t]), torch.tensor([r + R]))
    inverse = explicit_scores(model, t, r + R)
    forward = explicit_scores(model, h, r)
    for k in model.score_keys:
        torch.testing.assert_close(scores[k][0, h], inverse[k][h], rtol=1e-4, atol=1e-5)
        # a different query of a 1-N model: not the tail query's score of t
        assert not torch.isclose(scores[k][0, h], forward[k][t], rtol=1e-3)


def test_missing_modality_uses_the_placeholder():
    features = _features()
    model = _model(features=features).eval()
    inputs = model.modality_inputs()
    for e in MISSING_IMAGE:
        torch.testing.assert_close(inputs["v"][e], model.placeholders["v"])
    assert not torch.allclose(inputs["v"][0], model.placeholders["v"])
    heads, relations, _ = _queries()
    before = model.scores(heads, relations)["joint"]
    changed = _features()
    changed["image"].features[list(MISSING_IMAGE)] = 1000.0  # whatever a missing row holds is ignored
    other = _model(features=changed).eval()
    torch.testing.assert_close(other.scores(heads, relations)["joint"], before)


def _trainable(model):
    estimator = {id(p) for p in model.estimator_parameters()}
    return {n: p for n, p in model.named_parameters() if id(p) not in estimator}


@pytest.mark.parametrize("finetune", [True, False])
def test_gradients_reach_every_learning_parameter_and_no_estimator(finetune):
    model = _model(finetune_features=finetune, fusion_projection="mlp").train()
    heads, relations, tails = _queries()
    batch = TrainBatch(heads, relations, tails)
    torch.manual_seed(0)
    loss, parts = model.loss(batch)
    loss.backward()
    assert set(parts) == {"loss_s", "loss_v", "loss_t", "loss_j", "exid"}
    for name, p in _trainable(model).items():
        if name == "placeholders.t":  # every entity has a text feature: the placeholder is unused
            assert p.grad is None or not p.grad.any()
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert ("raw_v" in dict(model.named_parameters())) == finetune
    if not finetune:
        assert "raw_v" in dict(model.named_buffers()) and not model.raw_v.requires_grad
    estimator_params = model.estimator_parameters()
    assert estimator_params and all(p.grad is None for p in estimator_params)
    model.zero_grad(set_to_none=True)
    model.estimator_loss(batch).backward()
    assert all(p.grad is not None for p in estimator_params)
    assert all(p.grad is None for p in _trainable(model).values())


def test_recomputing_candidates_gives_the_same_gradients():
    heads, relations, tails = _queries()
    batch = TrainBatch(heads, relations, tails)
    grads = []
    for recompute in (True, False):
        model = _model(recompute_candidates=recompute, exid_weight=0.0, gate_noise=False, **NO_DROPOUT).train()
        model.loss(batch)[0].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 20
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


def test_softmax_ce_and_bce_losses_by_formula():
    heads, relations, tails = _queries()
    labels = _labels(tails)
    for loss_name in ("softmax_ce", "bce"):
        model = _model(loss=loss_name, exid_weight=0.0).eval()  # eval: deterministic scores
        assert model.needs_labels() == (loss_name == "bce")
        scores = model.scores(heads, relations)
        loss, parts = model.loss(TrainBatch(heads, relations, tails, labels))
        expected = 0.0
        for k in "svtj":
            if loss_name == "softmax_ce":
                part = -torch.log_softmax(scores[k], 1)[torch.arange(B), tails].mean()
            else:
                target = 0.9 * labels.float() + 1.0 / E
                p = torch.sigmoid(scores[k])
                part = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
            torch.testing.assert_close(torch.tensor(parts[f"loss_{k}"]), part.detach(), rtol=1e-4, atol=1e-6)
            expected = expected + part
        torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="labels"):
        _model(loss="bce").loss(TrainBatch(heads, relations, tails))


def test_exid_bound_all_pairs_and_random_pair():
    heads, relations, tails = _queries()
    for pairs in ("all", "random"):
        model = _model(club_pairs=pairs).eval()
        inputs = model.modality_inputs(heads)
        head_experts = {k: model.experts[k].experts(inputs[k]) for k in model.modality_keys}
        state = model.rng.get_state()
        bound = model.exid_bound(head_experts)
        model.rng.set_state(state)
        chosen = None if pairs == "all" else int(torch.randint(0, 6, (1,), generator=model.rng))
        expected = 0.0
        for k in model.modality_keys:
            permutation = torch.randperm(B, generator=model.rng)
            values = []
            for p, (i, j) in enumerate(model.expert_pairs.tolist()):
                if chosen is not None and p != chosen:
                    continue
                x, y = head_experts[k][:, i], head_experts[k][:, j]
                mu, logvar = model.estimators[k].mu_logvar(x[None], torch.tensor([p]))
                ll = lambda target: (-(target - mu[0]) ** 2 / (2 * logvar[0].exp())).sum(-1)
                values.append((ll(y) - ll(y[permutation])).mean())
            expected = expected + torch.stack(values).mean()
        torch.testing.assert_close(bound, expected)
        assert len(model.expert_pairs) == 6


def test_ablation_switches():
    heads, relations, tails = _queries()
    batch = TrainBatch(heads, relations, tails)

    # w/o relational: no temperature parameters, gates independent of the relation
    model = _model(relation_temperature=False).eval()
    assert model.temperature.theta is None
    same_head = torch.full((4,), 3)
    g = model.diagnostics(same_head, torch.tensor([0, 1, 2, 5]))["gates"]["s"]
    assert torch.allclose(g, g[:1].expand_as(g))
    g = _model().eval().diagnostics(same_head, torch.tensor([0, 1, 2, 5]))["gates"]["s"]
    assert not torch.allclose(g, g[:1].expand_as(g))

    # w/o noise: train-mode scores are deterministic without dropouts; with noise they are not
    for noise in (True, False):
        model = _model(gate_noise=noise, batch_norm=False, **NO_DROPOUT).train()
        a, b = model.scores(heads, relations)["joint"], model.scores(heads, relations)["joint"]
        assert torch.equal(a, b) != noise

    # w/o adaptive fusion: uniform modality weights
    alpha = _model(adaptive_fusion=False).eval().diagnostics(heads, relations)["alpha"]
    torch.testing.assert_close(alpha, torch.full((B, 3), 1 / 3))
    alpha = _model().eval().diagnostics(heads, relations)["alpha"]
    assert alpha.shape == (B, 3) and not torch.allclose(alpha, torch.full((B, 3), 1 / 3))

    # w/o joint training: only the joint modality's score is trained and ranks
    model = _model(joint_training=False).eval()
    _, parts = model.loss(batch)
    assert set(parts) == {"loss_j", "exid"}
    scores = model.scores(heads, relations)
    torch.testing.assert_close(scores["joint"], scores["j"])

    # w/o ExID: no estimators, no second loss
    model = _model(exid_weight=0.0)
    assert model.estimator_parameters() == [] and model.estimator_loss(batch) is None
    assert "exid" not in model.loss(batch)[1]

    # authors' joint score: mean of sigmoids
    scores = _model(joint_score="mean_sigmoid").eval().scores(heads, relations)
    torch.testing.assert_close(scores["joint"], torch.stack([torch.sigmoid(scores[k]) for k in "svtj"]).mean(0))

    # candidate relation guidance changes the scores (it is exact per query, tested above)
    guided = _model().eval().scores(heads, relations)["j"]
    unguided = _model(candidate_relation_guidance=False).eval().scores(heads, relations)["j"]
    assert not torch.allclose(guided, unguided)


def test_candidate_gate_noise_reaches_candidates():
    """Query noise is fixed by reseeding; only candidate noise can differ between the two runs."""
    heads, relations, _ = _queries()
    for candidate_noise in (False, True):
        model = _model(candidate_relation_guidance=False, candidate_gate_noise=candidate_noise,
                       batch_norm=False, **NO_DROPOUT).train()
        torch.manual_seed(0)
        a = model.scores(heads, relations)["s"]
        torch.manual_seed(0)
        b = model.scores(heads, relations)["s"]
        torch.testing.assert_close(a, b)  # reproducible under a seed
        # the same query encoding with candidates encoded without noise
        model.options.candidate_gate_noise = False
        torch.manual_seed(0)
        c = model.scores(heads, relations)["s"]
        assert torch.equal(a, c) != candidate_noise


def test_modality_subsets_and_feature_options():
    heads, relations, tails = _queries()
    model = _model(modalities=["structure"]).eval()
    assert model.modality_keys == ["s"] and set(model.scores(heads, relations)) == {"s", "j", "joint"}
    assert model.diagnostics(heads, relations)["alpha"].shape == (B, 1)
    model = _model(modalities=["text", "image"]).eval()
    assert model.modality_keys == ["v", "t"] and model.structure is None
    features = _features()
    model = _model(features=features, feature_pool_dim=4, normalize_features=True)
    raw = F.normalize(features["image"].features, dim=1).reshape(E, 4, 3).mean(-1)
    raw[list(MISSING_IMAGE)] = 0.0
    torch.testing.assert_close(model.raw_v, raw)


def test_a_modality_without_feature_file_is_the_placeholder_for_every_entity():
    """features.allow_missing with no image file (KVC16K): the image input of every entity is the learned
    placeholder; the model trains (the placeholder gets a gradient) and scores."""
    heads, relations, tails = _queries()
    text_only = {"text": _features()["text"]}
    model = _model(features=text_only)
    assert "v" not in model.feature_projections and not hasattr(model, "raw_v")
    inputs = model.modality_inputs(heads)
    torch.testing.assert_close(inputs["v"], model.placeholders["v"].expand(B, BASE.dim))
    assert model.modality_inputs()["v"].shape == (E, BASE.dim)
    loss, _ = model.loss(TrainBatch(heads, relations, tails))
    loss.backward()
    assert model.placeholders["v"].grad is not None and model.placeholders["v"].grad.abs().sum() > 0
    scores = model.eval().scores(heads, relations)
    assert all(torch.isfinite(v).all() for v in scores.values())


def test_diagnostics_are_the_query_side_weights():
    model = _model().eval()
    heads, relations, _ = _queries()
    diagnostics = model.diagnostics(heads, relations)
    inputs = model.modality_inputs(heads)
    tau = torch.sigmoid(model.temperature.theta[relations])
    for k in model.modality_keys:
        expected = torch.softmax((inputs[k] @ model.experts[k].gate_weight) / tau[:, None], -1)
        torch.testing.assert_close(diagnostics["gates"][k], expected)
    torch.testing.assert_close(diagnostics["alpha"].sum(-1), torch.ones(B))


def test_registry_and_option_validation():
    # registry._REGISTRY rather than get_model(): get_model also imports every baseline module
    entry = registry._REGISTRY["momok"]
    assert entry.options is MoMoKOptions
    context = BuildContext(num_entities=E, num_relations=R, features=_features(),
                           generator=torch.Generator().manual_seed(3))
    a = entry.build(replace(BASE), context)
    b = MoMoK(replace(BASE), E, R, _features(), torch.Generator().manual_seed(3))
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for name, p in state_a.items():
        q = state_b[name]
        if name == "_extra_state":  # the pair/permutation generator, seeded from the build generator
            assert torch.equal(p["rng_state"], q["rng_state"])
        else:
            assert torch.equal(p, q), name  # initialisation comes from the generator
    # a checkpoint restores the generator: the same random pairs and permutations after loading
    c = MoMoK(replace(BASE), E, R, _features(), torch.Generator().manual_seed(4))
    assert not torch.equal(c.rng.get_state(), a.rng.get_state())
    c.load_state_dict(state_a)
    assert torch.equal(c.rng.get_state(), a.rng.get_state())
    with pytest.raises(ConfigError, match="model.modalities"):
        MoMoK(replace(BASE, modalities=["structure", "audio"]), E, R, _features())
    with pytest.raises(ConfigError, match="model.core_dropout"):
        MoMoK(replace(BASE, core_dropout="sometimes"), E, R, _features())
    with pytest.raises(ConfigError, match="model.hidden_dropout1"):
        MoMoK(replace(BASE, hidden_dropout1=1.0), E, R, _features())
    with pytest.raises(ConfigError, match="features.text"):
        bad = _features()
        bad["text"].features = bad["text"].features[:-1]
        MoMoK(replace(BASE), E, R, bad)


@pytest.mark.parametrize("key, value, choices", [
    ("loss", "hinge", "softmax_ce, bce"),
    ("core_dropout", "sometimes", "per_query, per_relation, output, gaussian"),
    ("club_pairs", "some", "all, random"),
    ("modalities", ["structure", "audio"], "structure, image, text"),
])
def test_config_loader_checks_option_choices(key, value, choices):
    """The options' choices are ``Literal`` types, checked when a run config is loaded."""
    from momok.config import config_from_dict

    with pytest.raises(ConfigError, match=rf"model\.{key}.*must be one of {choices}"):
        config_from_dict({"dataset": {"path": "data"}, "model": {"name": "momok", key: value}})
