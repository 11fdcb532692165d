"""Table 2 baselines, part kge3 (RSME, MMKRL, TransAE): score and loss formulas written out by hand,
and short trainings on the toy dataset."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pykeen")

from momok.models.base import TrainBatch  # noqa: E402
from momok.models.registry import get_model, model_names  # noqa: E402
from test_baselines import (  # noqa: E402,F401  (toy_with_features is a fixture)
    E, by_hand, feature_table, queries, random_mrr, test_mrr, toy_with_features, train_on,
)
from test_baselines import build as _build  # noqa: E402

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
def test_rsme_beats_random_and_its_structure_only_variant(toy_with_features, tmp_path):  # noqa: F811
    root, features = toy_with_features
    model = {"name": "rsme", "dim": 16}
    full = test_mrr(train_on(root, tmp_path / "full", model, epochs=20, features=features))
    structure_only = test_mrr(train_on(root, tmp_path / "structure", {**model, "modalities": ["structure"]},
                                       epochs=20))
    print(f"rsme: test MRR {full:.4f}, structure only {structure_only:.4f} (random {random_mrr(300):.4f})")
    assert full > 2 * random_mrr(300)
    assert full > structure_only + 0.01, (full, structure_only)
