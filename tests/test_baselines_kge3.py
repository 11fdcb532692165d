"""Table 2 baselines, part kge3 (RSME, MMKRL, TransAE): score and loss formulas written out by hand,
and short trainings on the toy dataset."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pykeen")

from baseline_runs import mrr_with_ablation, random_mrr  # noqa: E402
from test_baselines import E, by_hand, feature_table, loss_with_uniform_draw, queries  # noqa: E402
from test_baselines import build as _build  # noqa: E402

from momok.models.base import TrainBatch  # noqa: E402
from momok.models.registry import get_model, model_names  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(name, features=None, **options):
    return _build(name, features, **options)


def complex_score(e, r, d):
    """Re(Σ_k h_k r_k conj(t_k)) of real rows (real parts first, imaginary parts after), loops."""
    def fn(h, q, t):
        return sum((complex(e[h, k], e[h, d + k]) * complex(r[q, k], r[q, d + k])
                    * complex(e[t, k], e[t, d + k]).conjugate()).real for k in range(d))
    return fn


def cosine(a, b):
    return float((a * b).sum() / (a.norm() * b.norm()))


# ---------------------------------------------------------------------------------------------- RSME


def test_rsme_is_registered_and_checks_its_modalities():
    assert "rsme" in model_names()
    options = get_model("rsme").options
    options()
    options(modalities=("structure",))
    with pytest.raises(ValueError, match="one feature modality"):
        options(modalities=("structure", "image", "text"))


def test_rsme_score_is_gated_visual_similarity_plus_complex_of_mixed_embeddings():
    features = {"image": feature_table(6, 1, missing=[2])}
    model = build("rsme", features, dim=3, alpha=0.3, beta=0.8)
    heads, relations = queries()
    with torch.no_grad():
        model.gate_logits.copy_(torch.linspace(-1.0, 1.5, model.gate_logits.shape[0]))
        image = features["image"]
        projected = torch.where(image.mask.unsqueeze(1), model.inputs.projections["image"](image.features),
                                model.inputs.placeholders["image"])
        mixed = 0.7 * model.entity + 0.3 * projected
        structure = complex_score(mixed, model.relation, 3)

        def rsme(h, q, t):
            similarity = 0.0 if 2 in (h, t) else cosine(image.features[h], image.features[t])
            gate = 1 / (1 + math.exp(-float(model.gate_logits[q])))
            return 0.8 * structure(h, q, t) + 0.2 * gate * similarity

        got = model.scores(heads, relations)
        torch.testing.assert_close(got["score"], by_hand(rsme, heads, relations), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["structure"], by_hand(structure, heads, relations), atol=1e-5, rtol=1e-5)
    ungated = build("rsme", features, dim=3, forget_gate=False)
    with torch.no_grad():
        out = ungated.scores(heads, relations)
        torch.testing.assert_close(out["score"], 0.95 * out["structure"] + 0.05 * out["visual"])
        assert out["visual"][0, int(heads[0])] == pytest.approx(0.0 if int(heads[0]) == 2 else 1.0, abs=1e-6)
    structure_only = build("rsme", dim=3, modalities=("structure",))
    with torch.no_grad():
        out = structure_only.scores(heads, relations)
        e, r = structure_only.entity, structure_only.relation
        torch.testing.assert_close(out["score"], by_hand(complex_score(e, r, 3), heads, relations),
                                   atol=1e-5, rtol=1e-5)


def test_rsme_loss_is_cross_entropy_of_the_full_score_plus_n3():
    features = {"text": feature_table(5, 2, missing=[0])}
    model = build("rsme", features, dim=2, modalities=("structure", "text"), regularization=0.3)
    heads, relations = queries()
    tails = (heads + 2) % E
    loss, parts = model.loss(TrainBatch(heads, relations, tails))
    expected = 0.0
    with torch.no_grad():
        scores = model.scores(heads, relations)["score"]
        text = features["text"]
        projected = torch.where(text.mask.unsqueeze(1), model.inputs.projections["text"](text.features),
                                model.inputs.placeholders["text"])
        e = 0.5 * model.entity + 0.5 * projected
        r = model.relation
        for b, (h, q, t) in enumerate(zip(heads.tolist(), relations.tolist(), tails.tolist())):
            expected += float(torch.logsumexp(scores[b], 0) - scores[b, t]) / len(heads)
            for x in (e[h], r[q], e[t]):
                expected += 0.3 * sum(abs(complex(x[k], x[2 + k])) ** 3 for k in range(2)) / len(heads)
    assert set(parts) == {"ce", "n3", "mean_gate"}
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert model.gate_logits.grad.abs().sum() > 0  # the forget gate learns from the loss


@pytest.mark.slow
def test_rsme_beats_random_and_its_structure_only_variant(toy_with_features, tmp_path):
    model = {"name": "rsme", "dim": 16}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=20)
    assert full > 2 * random_mrr(300)
    assert full > structure_only + 0.01, (full, structure_only)


# ---------------------------------------------------------------------------------------------- MMKRL


def mmkrl_reference(model, features, p=1):
    """MMKRL's pieces written out per entity / triple (module docstring of momok.models.baselines.mmkrl)."""
    def n(x):
        return x / x.norm()

    W, Wsm = model.structure_projection.weight, model.alignment_projection.weight
    b = {k: v for k, v in model.biases.items()}

    def m(e):  # Σ_k P_k x_k, placeholder where the entity lacks the modality
        total = 0
        for k, table in features.items():
            if table.mask[e]:
                total = total + model.inputs.projections[k](table.features[e])
            else:
                total = total + model.inputs.placeholders[k]
        return total

    def d(a, r, c):
        return torch.linalg.vector_norm(n(a) + n(r) - n(c), ord=p)

    def score(h, q, t, mh=None, mt=None):
        s, r = model.entity, model.relation
        mh = m(h) if mh is None else mh
        mt = m(t) if mt is None else mt
        rr = W @ r[q] + b["relation"]
        return -(d(W @ s[h] + b["head"], rr, W @ s[t] + b["tail"]) + d(mh, rr, mt) + d(mh, rr, s[t])
                 + d(s[h], rr, mt)) / 4

    def alignment(h, q, t):
        s, r = model.entity, model.relation
        mse = lambda x, y: ((x - y) ** 2).mean()  # noqa: E731
        return (mse(s[h], W @ s[h] + b["head"]) + mse(s[t], W @ s[t] + b["tail"])
                + mse(r[q], W @ r[q] + b["relation"]) + mse(Wsm @ s[h], m(h)) + mse(Wsm @ s[t], m(t)))

    return m, score, alignment


def test_mmkrl_score_is_the_mean_of_four_transe_energies():
    features = {"image": feature_table(6, 1, missing=[2]), "text": feature_table(5, 2, missing=[4])}
    model = build("mmkrl", features, dim=4)
    heads, relations = queries()
    _, score, _ = mmkrl_reference(model, features)
    with torch.no_grad():
        got = model.scores(heads, relations)["score"]
        torch.testing.assert_close(got, by_hand(score, heads, relations), atol=1e-5, rtol=1e-5)
        chunked = build("mmkrl", features, dim=4, chunk_elements=1).scores(heads, relations)["score"]
        torch.testing.assert_close(chunked, got)
    structure_only = build("mmkrl", dim=4, modalities=("structure",), p=2)
    with torch.no_grad():
        s, r = structure_only.entity, structure_only.relation
        W, bias = structure_only.structure_projection.weight, structure_only.biases
        n = lambda x: x / x.norm()  # noqa: E731
        expected = by_hand(lambda h, q, t: -torch.linalg.vector_norm(
            n(W @ s[h] + bias["head"]) + n(W @ r[q] + bias["relation"]) - n(W @ s[t] + bias["tail"])),
            heads, relations)
        torch.testing.assert_close(structure_only.scores(heads, relations)["score"], expected, atol=1e-5, rtol=1e-5)


def test_mmkrl_loss_is_ranking_plus_alignment_plus_adversarial_ranking():
    from momok.models.baselines.kge import margin_loss

    features = {"image": feature_table(6, 1, missing=[3]), "text": feature_table(5, 2)}
    model = build("mmkrl", features, dim=3, num_negatives=4, adversarial_epsilon=0.5, margin=2.0,
                  adversarial_temperature=1.0)
    heads, relations = queries()
    tails = (heads + 1) % E
    loss, parts, negatives = loss_with_uniform_draw(model, TrainBatch(heads, relations, tails), 4)
    m, score, alignment = mmkrl_reference(model, features)
    candidates = torch.cat([tails.unsqueeze(1), negatives], dim=1).tolist()

    def ranking(mh_rows, mc_rows):  # margin loss over [B, 1 + n] scores, multi-modal rows given
        scores = torch.stack([torch.stack([score(int(h), int(q), c, mh_rows[b], mc_rows[b][j])
                                           for j, c in enumerate(candidates[b])])
                              for b, (h, q) in enumerate(zip(heads, relations))])
        return margin_loss(scores[:, 0], scores[:, 1:], 2.0, 1.0)

    mh = [m(int(h)).detach().requires_grad_(True) for h in heads]
    mc = [[m(c).detach().requires_grad_(True) for c in row] for row in candidates]
    base = ranking(mh, mc)
    grads = torch.autograd.grad(base, mh + [x for row in mc for x in row])
    unit = [0.5 * g / g.norm() for g in grads]
    mh_adv = [x + u for x, u in zip(mh, unit[:len(mh)])]
    flat = [x + u for x, u in zip([x for row in mc for x in row], unit[len(mh):])]
    mc_adv = [flat[i * 5:(i + 1) * 5] for i in range(len(heads))]
    adversarial = ranking(mh_adv, mc_adv)
    with torch.no_grad():
        align = torch.stack([alignment(int(h), int(q), int(t)) for h, q, t in zip(heads, relations, tails)]).mean()
    base, adversarial = base.detach(), adversarial.detach()
    assert parts["margin"] == pytest.approx(float(base), rel=1e-5)
    assert parts["adversarial"] == pytest.approx(float(adversarial), rel=1e-5)
    # MSE over the batch = mean of the per-triple MSEs (equal sizes)
    assert parts["alignment"] == pytest.approx(float(align), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(base + adversarial + align), rel=1e-5)
    no_adversary = build("mmkrl", features, dim=3, adversarial_epsilon=0.0)
    assert "adversarial" not in no_adversary.loss(TrainBatch(heads, relations, tails))[1]


def test_mmkrl_rejects_other_samplers():
    from momok.models.sampling import SamplerOptions

    with pytest.raises(ValueError, match="uniform negatives"):
        get_model("mmkrl").options(sampler=SamplerOptions(name="mans"))


@pytest.mark.slow
def test_mmkrl_beats_random_with_and_without_modalities(toy_with_features, tmp_path):
    # Measured on this toy (5 epochs, seed 0): test MRR 0.052 with features, 0.059 for the structure-only
    # variant and 0.066 for the full model with placeholders only (no feature files); with p = 2: 0.066,
    # 0.073, 0.063. The paper's gain of the modalities does not show on this toy within a test-sized
    # budget, so it is not asserted.
    model = {"name": "mmkrl", "dim": 32, "num_negatives": 32}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=5)
    assert full > 2 * random_mrr(300)
    assert structure_only > 2 * random_mrr(300)


# ---------------------------------------------------------------------------------------------- TransAE


def transae_code(model, features, e):
    """z of entity e written out: per-modality ReLU layers, concatenation, joint ReLU layer."""
    ae = model.autoencoder
    hidden = []
    for m in ("image", "text"):
        if m not in features:
            continue
        table = features[m]
        x = table.features[e] / table.features[e].norm() if table.mask[e] else torch.zeros(table.features.shape[1])
        hidden.append(torch.relu(ae.encoders[m].weight @ x + ae.encoders[m].bias))
    return torch.relu(ae.joint.weight @ torch.cat(hidden) + ae.joint.bias)


@pytest.mark.parametrize("p", [1, 2])
def test_transae_score_is_transe_over_autoencoder_codes(p):
    features = {"image": feature_table(6, 1, missing=[2]), "text": feature_table(5, 2)}
    model = build("transae", features, dim=4, hidden=3, p=p)
    heads, relations = queries()
    with torch.no_grad():
        z = [transae_code(model, features, e) for e in range(E)]
        n = [x / x.norm() for x in z]
        r = model.relation
        expected = by_hand(lambda h, q, t: -torch.linalg.vector_norm(n[h] + r[q] - n[t], ord=p), heads, relations)
        torch.testing.assert_close(model.scores(heads, relations)["score"], expected, atol=1e-5, rtol=1e-5)
    structure_only = build("transae", dim=4, modalities=("structure",), normalize=False)
    with torch.no_grad():
        e, r = structure_only.entity, structure_only.relation
        expected = by_hand(lambda h, q, t: -torch.linalg.vector_norm(e[h] + r[q] - e[t], ord=1), heads, relations)
        torch.testing.assert_close(structure_only.scores(heads, relations)["score"], expected, atol=1e-5, rtol=1e-5)


def test_transae_loss_is_margin_plus_reconstruction_of_present_modalities():
    from momok.models.baselines.kge import margin_loss

    features = {"image": feature_table(6, 1, missing=[2, 5]), "text": feature_table(5, 2)}
    model = build("transae", features, dim=4, hidden=3, num_negatives=3, margin=1.5, adversarial_temperature=0.5,
                  reconstruction_weight=0.7)
    heads, relations = queries()
    tails = (heads + 1) % E
    loss, parts, negatives = loss_with_uniform_draw(model, TrainBatch(heads, relations, tails), 3)
    ae = model.autoencoder
    with torch.no_grad():
        z = [transae_code(model, features, e) for e in range(E)]
        n = [x / x.norm() for x in z]
        r = model.relation
        scores = torch.tensor([[float(-torch.linalg.vector_norm(n[int(h)] + r[int(q)] - n[int(c)], ord=1))
                                for c in [t] + row.tolist()]
                               for h, q, t, row in zip(heads, relations, tails, negatives)])
        ranking = margin_loss(scores[:, 0], scores[:, 1:], 1.5, 0.5)
        entities = sorted(set(heads.tolist()) | set(tails.tolist()))
        errors = []
        for i, m in enumerate(("image", "text")):
            table, squared, count = features[m], 0.0, 0
            for e in entities:
                if not table.mask[e]:
                    continue
                x = table.features[e] / table.features[e].norm()
                v = torch.relu(ae.unjoint.weight @ z[e] + ae.unjoint.bias)[3 * i:3 * (i + 1)]
                x_hat = ae.decoders[m].weight @ v + ae.decoders[m].bias
                squared += float(((x_hat - x) ** 2).sum())
                count += x.numel()
            errors.append(squared / count)
        reconstruction = sum(errors) / 2
    assert parts["margin"] == pytest.approx(float(ranking), rel=1e-5)
    assert parts["reconstruction"] == pytest.approx(reconstruction, rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(ranking) + 0.7 * reconstruction, rel=1e-5)


@pytest.mark.slow
def test_transae_beats_random_and_its_structure_only_variant(toy_with_features, tmp_path):
    # Measured on this toy (seed 0): 5 epochs 0.056 test MRR with features vs 0.038 structure only
    # (TransE); 10 epochs 0.059 vs 0.043.
    model = {"name": "transae", "dim": 32, "num_negatives": 32}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=5)
    assert full > 2 * random_mrr(300)
    assert full > structure_only + 0.01, (full, structure_only)


# ---------------------------------------------------------------------------------------------- VISTA


def test_vista_scores_decode_head_relation_mask_against_encoded_entities():
    features = {"image": feature_table(6, 1, missing=[2, 4]), "text": feature_table(5, 2)}
    model = build("vista", features, dim=8, num_heads=2, ffn_dim=16)
    model.eval()
    heads, relations = queries()
    tok = model.tokens
    with torch.no_grad():
        def entity(e):  # the sequence written out, the missing image token dropped (not masked)
            sequence = [tok["entity_token"][0], model.norms["structure"](model.entity[e]) + tok["pos_structure"][0]]
            if features["image"].mask[e]:
                x = model.projections["image"](features["image"].features[e])
                sequence.append(model.norms["image"](x) + tok["pos_image"][0])
            x = model.projections["text"](features["text"].features[e])
            sequence.append(model.norms["text"](x) + tok["pos_text"][0])
            return model.entity_encoder(torch.stack(sequence).unsqueeze(0))[0, 0]

        def relation(q):
            sequence = [tok["relation_token"][0],
                        model.norms["structure"](model.relation[q]) + tok["pos_relation_structure"][0]]
            return model.relation_encoder(torch.stack(sequence).unsqueeze(0))[0, 0]

        table = [entity(e) for e in range(E)]

        def score(h, q, t):
            sequence = torch.stack([table[h] + tok["pos_head"][0], relation(q) + tok["pos_relation"][0],
                                    tok["mask_token"][0] + tok["pos_tail"][0]])
            return model.decoder(sequence.unsqueeze(0))[0, 2] @ table[t]

        torch.testing.assert_close(model.scores(heads, relations)["score"], by_hand(score, heads, relations),
                                   atol=1e-4, rtol=1e-4)


def test_vista_loss_is_smoothed_cross_entropy_and_structure_only_variant_scores():
    features = {"text": feature_table(5, 2)}
    model = build("vista", features, dim=8, num_heads=2, ffn_dim=16, label_smoothing=0.2, modalities=("structure", "text"))
    model.eval()  # no dropout: the loss is a function of the scores
    heads, relations = queries()
    tails = (heads + 3) % E
    with torch.no_grad():
        loss, parts = model.loss(TrainBatch(heads, relations, tails))
        scores = model.scores(heads, relations)["score"]
        expected = 0.0
        for b, t in enumerate(tails.tolist()):
            log_p = scores[b] - torch.logsumexp(scores[b], 0)
            expected += float(-(0.8 * log_p[t] + 0.2 * log_p.mean())) / len(heads)
    assert float(loss) == pytest.approx(expected, rel=1e-5) and set(parts) == {"ce"}
    structure_only = build("vista", dim=8, num_heads=2, ffn_dim=16, modalities=("structure",))
    structure_only.eval()
    with torch.no_grad():
        sequence, missing = structure_only.entity_sequence()
        assert sequence.shape == (E, 2, 8) and not missing.any()
        assert torch.isfinite(structure_only.scores(heads, relations)["score"]).all()
    with pytest.raises(ValueError, match="must divide"):
        get_model("vista").options(dim=10, num_heads=4)


@pytest.mark.slow
def test_vista_beats_random_with_and_without_modalities(toy_with_features, tmp_path):
    # Measured on this toy (seed 0, dim 32, 4 heads, FFN 64): 5 epochs at lr 0.01 0.066 test MRR with
    # features vs 0.061 structure only; 10 epochs at lr 0.003 0.069 vs 0.061. The gap is within what run
    # noise could give, so only beating random is asserted.
    model = {"name": "vista", "dim": 32, "num_heads": 4, "ffn_dim": 64}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=5)
    assert full > 2 * random_mrr(300)
    assert structure_only > 2 * random_mrr(300)
