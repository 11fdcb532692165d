"""Table 2 baselines, part kge2: OTKGE, QEB, VBKGC — score and loss formulas against hand-written
references, option checks, and short trainings on the toy dataset."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("pykeen")

from baseline_runs import mrr_with_ablation, random_mrr  # noqa: E402
from test_baselines import by_hand, loss_with_uniform_draw  # noqa: E402

from momok.features.store import FeatureTable  # noqa: E402
from momok.models.base import TrainBatch  # noqa: E402
from momok.models.baselines import otkge, qeb, vbkgc  # noqa: E402
from momok.models.registry import BuildContext, get_model, model_names  # noqa: E402
from momok.models.sampling import SamplerOptions  # noqa: E402

E, R = 7, 3

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def features(missing_image=(2,), missing_text=(5,)):
    g = torch.Generator().manual_seed(11)

    def table(dim, missing):
        mask = torch.ones(E, dtype=torch.bool)
        mask[list(missing)] = False
        return FeatureTable(torch.rand(E, dim, generator=g) * 0.3, mask, {"modality": "x"})

    return {"image": table(4, missing_image), "text": table(3, missing_text)}


def build(name, feats=None, **options):
    entry = get_model(name)
    return entry.build(entry.options(**options),
                       BuildContext(num_entities=E, num_relations=R, features=feats or {},
                                    generator=torch.Generator().manual_seed(0)))


def queries():
    return torch.tensor([0, 3, 6, 2]), torch.tensor([1, 4, 0, 5])


def l1(v):
    return sum(abs(float(x)) for x in v)


def test_registered_with_valid_defaults_and_clear_option_errors():
    for name in ("otkge", "qeb", "vbkgc"):
        assert name in model_names()
        get_model(name).options()
    with pytest.raises(ValueError, match="at most 1"):
        otkge.OTKGEOptions(image_weight=0.5, text_weight=0.6)
    otkge.OTKGEOptions(image_weight=0.5, text_weight=0.6, modalities=("structure", "image"))
    with pytest.raises(ValueError, match="unknown 'xyz'"):
        qeb.QEBOptions(energies=("sss", "xyz"))
    with pytest.raises(ValueError, match="'mmm' needs parts"):
        qeb.QEBOptions(energies=("mmm",), relation_multimodal=False)
    assert qeb.QEBOptions(modalities=("structure",)).terms() == ("sss",)
    assert len(qeb.QEBOptions().terms()) == 10 and len(qeb.QEBOptions(relation_multimodal=False).terms()) == 5
    assert vbkgc.VBKGCOptions(modalities=("structure",)).energies == ("s",)
    with pytest.raises(ValueError, match="only the energy s"):
        vbkgc.VBKGCOptions(modalities=("structure",), energies=("s", "m"))
    with pytest.raises(ValueError, match="mans"):
        qeb.QEBOptions(sampler=SamplerOptions(name="mans"))


# ---------------------------------------------------------------------------------------------- OTKGE


def sinkhorn_by_hand(x, s, scale, reg, iterations, tolerance):
    """The official sinkhorn_knopp, its orientation (u over the structural coordinates, v over the
    feature coordinates), written with Python loops; returns the plan as [feature, structural]."""
    D, S = len(x), len(s)
    K = [[math.exp(-reg * scale * (float(x[i]) - float(s[j])) ** 2) for i in range(D)] for j in range(S)]  # [S][D]
    u, v = [1.0 / S] * S, [1.0 / D] * D
    for it in range(1, iterations + 1):
        v = [(1.0 / D) / (sum(u[j] * K[j][i] for j in range(S)) + 1e-16) for i in range(D)]
        u = [(1.0 / S) / (sum(K[j][i] * v[i] for i in range(D)) + 1e-16) for j in range(S)]
        if it % 10 == 0:
            b_hat = [sum(u[j] * K[j][i] for j in range(S)) * v[i] for i in range(D)]
            if sum((1.0 / D - b) ** 2 for b in b_hat) <= tolerance:
                break
    return torch.tensor([[u[j] * K[j][i] * v[i] for j in range(S)] for i in range(D)])


def test_otkge_sinkhorn_plans_match_the_official_iteration_written_out():
    g = torch.Generator().manual_seed(5)
    x, s = torch.rand(2, 4, generator=g), torch.rand(2, 6, generator=g) * 0.5
    cost = 3.0 * (x.unsqueeze(-1) - s.unsqueeze(1)).square()
    got = otkge.sinkhorn_plans(cost.double(), 0.7, 200, 1e-12)
    for k in range(2):
        expected = sinkhorn_by_hand(x[k], s[k], 3.0, 0.7, 200, 1e-12)
        torch.testing.assert_close(got[k].float(), expected.float(), atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got[k].sum(1), torch.full((4,), 0.25, dtype=got.dtype), atol=1e-6, rtol=1e-5)


def test_otkge_score_is_complex_over_the_fused_transported_embeddings():
    feats = features()
    model = build("otkge", feats, dim=3, ot_scale=2.0, ot_samples=3, sinkhorn_iterations=50,
                  sinkhorn_tolerance=0.0, image_weight=0.2, text_weight=0.3)
    with torch.no_grad():
        model.entity.normal_(0, 0.3, generator=torch.Generator().manual_seed(1))
    heads, relations = queries()
    e_s, rel = model.entity.detach(), model.relation.detach()
    fused = 0.5 * e_s
    for m, w in (("image", 0.2), ("text", 0.3)):
        x, mask = feats[m].features, feats[m].mask
        x = x / x.norm(dim=1, keepdim=True)  # normalize_features (default)
        samples = [i for i in range(E) if mask[i]][:3]
        plans = [sinkhorn_by_hand(x[i], e_s[i], 2.0, 0.1, 50, 0.0) for i in samples]
        M = sum(plans) / len(plans) * 6 * 2.0 + model.deltas[m].detach()
        e_m = torch.stack([x[i] @ M if mask[i] else model.placeholders[m].detach() for i in range(E)])
        fused = fused + w * e_m

    def complex_score(h, r, t):
        return sum((complex(fused[h, k], fused[h, 3 + k]) * complex(rel[r, k], rel[r, 3 + k])
                    * complex(fused[t, k], fused[t, 3 + k]).conjugate()).real for k in range(3))

    model.eval()
    with torch.no_grad():
        got = model.scores(heads, relations)["score"]
    torch.testing.assert_close(got, by_hand(complex_score, heads, relations), atol=1e-4, rtol=1e-4)


def test_otkge_loss_is_cross_entropy_plus_n3_and_the_plan_has_no_gradient():
    model = build("otkge", features(), dim=3, regularization=0.05)
    heads, relations = queries()
    tails = torch.tensor([1, 2, 3, 4])
    loss, parts = model.loss(TrainBatch(heads, relations, tails))
    table, rel = model._fused().detach(), model.relation.detach()
    logits = model.scores(heads, relations)["score"].detach()
    ce = sum(-math.log(math.exp(float(logits[b, tails[b]])) / sum(math.exp(float(v)) for v in logits[b]))
             for b in range(4)) / 4

    def n3(rows):
        return sum(math.hypot(float(row[k]), float(row[3 + k])) ** 3 for row in rows for k in range(3))

    expected = ce + 0.05 * (n3(table[heads]) + n3(rel[relations]) + n3(table[tails])) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-4)
    assert parts["ce"] == pytest.approx(ce, rel=1e-4)
    loss.backward()
    assert model.deltas["image"].grad.abs().sum() > 0 and model.entity.grad is not None


# ---------------------------------------------------------------------------------------------- QEB


def qeb_reference(model, feats):
    """Every entity's (h_s, h_m) and every relation's (r_s, r_m), from the formulas."""
    sm, mm, rm = model.structure_map, model.multimodal_map, model.relation_map

    def dense(layer, x):
        return torch.tanh(layer.weight.detach() @ x + layer.bias.detach())

    ents = []
    for e in range(E):
        parts = []
        for m in ("text", "image"):  # official concatenation order
            x, mask = feats[m].features[e], feats[m].mask[e]
            parts.append(x if mask else model.inputs.padding[m].detach())
        ents.append((dense(sm, model.entity.detach()[e]), dense(mm, torch.cat(parts))))
    rels = [(dense(sm, model.relation.detach()[r]), dense(rm, model.relation_m.detach()[r])) for r in range(2 * R)]
    return ents, rels


def test_qeb_score_is_minus_the_ten_translation_energies():
    feats = features()
    model = build("qeb", feats, dim=4, structure_dim=3)
    model.eval()
    ents, rels = qeb_reference(model, feats)

    def energy(h, r, t):
        (hs, hm), (rs, rm), (ts, tm) = ents[h], rels[r], ents[t]
        return (l1(hs + rs - ts) + l1(hm + rs - tm) + l1(hm + rs - ts) + l1(hs + rs - tm)
                + l1(hs + hm + rs - ts - tm)
                + l1(hm + rm - tm) + l1(hs + rm - ts) + l1(hm + rm - ts) + l1(hs + rm - tm)
                + l1(hs + hm + rm - ts - tm))

    heads, relations = queries()
    with torch.no_grad():
        got = model.scores(heads, relations)["score"]
        torch.testing.assert_close(got, -by_hand(energy, heads, relations), atol=1e-4, rtol=1e-5)
        candidates = torch.arange(E).expand(len(heads), E)
        torch.testing.assert_close(model.score_candidates(heads, relations, candidates), got, atol=1e-4, rtol=1e-5)

    structure_only = build("qeb", dim=4, structure_dim=3, modalities=("structure",))
    s = [torch.tanh(structure_only.structure_map(x)).detach() for x in structure_only.entity]
    r = [torch.tanh(structure_only.structure_map(x)).detach() for x in structure_only.relation]
    with torch.no_grad():
        got = structure_only.scores(heads, relations)["score"]
    torch.testing.assert_close(got, -by_hand(lambda h, q, t: l1(s[h] + r[q] - s[t]), heads, relations),
                               atol=1e-4, rtol=1e-5)


def test_qeb_loss_is_the_margin_loss_with_one_corrupted_tail():
    feats = features()
    model = build("qeb", feats, dim=4, structure_dim=3)
    heads, relations = queries()
    tails = torch.tensor([1, 2, 3, 4])
    loss, _, negatives = loss_with_uniform_draw(model, TrainBatch(heads, relations, tails), 1, seed=3)
    with torch.no_grad():
        scores = model.scores(heads, relations)["score"]
    expected = sum(max(0.0, 10.0 - float(scores[b, tails[b]]) + float(scores[b, negatives[b, 0]]))
                   for b in range(4)) / 4
    assert float(loss) == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------------------------------------- VBKGC


def vbkgc_parts(model, feats):
    """Every entity's (e_s, e_m) from the formulas: e_m = P [x_image; x_text] (padding where missing)."""
    P = model.projection
    rows = []
    for e in range(E):
        x = torch.cat([feats[m].features[e] if feats[m].mask[e] else model.inputs.padding[m].detach()
                       for m in ("image", "text")])
        rows.append((model.entity.detach()[e], P.weight.detach() @ x + P.bias.detach()))
    return rows


def unit(v):
    return v / v.norm()


def test_vbkgc_score_is_minus_the_four_translation_energies():
    feats = features()
    model = build("vbkgc", feats, dim=4)
    ents, rel = vbkgc_parts(model, feats), model.relation.detach()

    def energy(h, r, t):
        (hs, hm), (ts, tm), q = ents[h], ents[t], unit(rel[r])
        return (l1(unit(hs) + q - unit(ts)) + l1(unit(hm) + q - unit(tm))
                + l1(unit(hs) + q - unit(tm)) + l1(unit(hm) + q - unit(ts)))

    heads, relations = queries()
    model.eval()
    with torch.no_grad():
        got = model.scores(heads, relations)["score"]
    torch.testing.assert_close(got, -by_hand(energy, heads, relations), atol=1e-4, rtol=1e-5)


def test_vbkgc_twins_replace_one_embedding_of_the_answer_at_a_time():
    feats = features()
    model = build("vbkgc", feats, dim=4, num_negatives=2, adversarial_temperature=0.0, margin=1.0)
    ents, rel = vbkgc_parts(model, feats), model.relation.detach()
    heads, relations = queries()
    tails = torch.tensor([1, 2, 3, 4])
    loss, _, drawn = loss_with_uniform_draw(model, TrainBatch(heads, relations, tails), 2, seed=4)

    def energy(h, r, t_s, t_m):
        hs, hm = ents[h]
        q = unit(rel[r])
        return (l1(unit(hs) + q - unit(t_s)) + l1(unit(hm) + q - unit(t_m))
                + l1(unit(hs) + q - unit(t_m)) + l1(unit(hm) + q - unit(t_s)))

    expected = 0.0
    for b in range(4):
        h, r, t = int(heads[b]), int(relations[b]), int(tails[b])
        positive = -energy(h, r, *ents[t])
        twins = [-energy(h, r, ents[int(n)][0], ents[t][1]) for n in drawn[b]]  # structural twins
        twins += [-energy(h, r, ents[t][0], ents[int(n)][1]) for n in drawn[b]]  # multimodal twins
        expected += sum(max(0.0, 1.0 - positive + s) for s in twins) / len(twins)
    assert float(loss) == pytest.approx(expected / 4, rel=1e-4)

    ordinary = build("vbkgc", feats, dim=4, num_negatives=2, adversarial_temperature=0.0, margin=1.0, twins=False)
    torch.manual_seed(4)
    loss, _ = ordinary.loss(TrainBatch(heads, relations, tails))
    expected = sum(max(0.0, 1.0 + energy(int(heads[b]), int(relations[b]), *ents[int(tails[b])])
                       - energy(int(heads[b]), int(relations[b]), *ents[int(n)])) for b in range(4) for n in drawn[b])
    assert float(loss) == pytest.approx(expected / 8, rel=1e-4)


# ---------------------------------------------------------------------------------------------- toy training


@pytest.mark.slow
def test_otkge_beats_random_and_its_structure_only_variant(toy_with_features, tmp_path):
    # The paper claims the transported modalities help over the structural embeddings (ComplEx).
    # Measured on this toy (20 epochs, seed 0; 20 Sinkhorn iterations instead of 1000 to fit a test
    # budget): test MRR 0.1697 with features, 0.0928 structure only (random 0.0209).
    model = {"name": "otkge", "dim": 16, "sinkhorn_iterations": 20}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=20)
    assert full > 3 * random_mrr(300)
    assert full > structure_only + 0.03, (full, structure_only)


@pytest.mark.slow
def test_qeb_beats_random(toy_with_features, tmp_path):
    # Measured on this toy (12 epochs, seed 0): test MRR 0.0491 with features, 0.0508 structure only
    # (random 0.0209); the paper's gain of the modalities does not show here, so it is not asserted.
    model = {"name": "qeb", "dim": 16, "structure_dim": 16, "num_negatives": 16}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=12)
    assert full > 2 * random_mrr(300)
    assert structure_only > 2 * random_mrr(300)


@pytest.mark.slow
def test_vbkgc_beats_random(toy_with_features, tmp_path):
    # Measured on this toy (12 epochs, seed 0): test MRR 0.0302 with features and twins, 0.0257 for the
    # structure-only variant (TransE with the zjukg defaults γ 6, α 2); random 0.0209. Both are weak on
    # this toy, so only the full model's margin over random is asserted (1.3x).
    model = {"name": "vbkgc", "dim": 16, "num_negatives": 16}
    full, structure_only = mrr_with_ablation(toy_with_features, tmp_path, model, epochs=12)
    assert full > 1.3 * random_mrr(300), full
