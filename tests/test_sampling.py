"""Negative samplers (momok.models.sampling): the uniform default, MANS's visual/hybrid/two-stage negatives,
their use by the negative-sampling models, their config, and reproducibility across --resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from momok.errors import ConfigError
from momok.features.store import FeatureTable, base_metadata, save_features
from momok.models.base import TrainBatch
from momok.models.registry import BuildContext, get_model
from momok.models.sampling import MANSSampler, SamplerOptions, UniformSampler, build_sampler, uniform_excluding

E, R = 9, 2
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def image_table(missing=(), dim=5, seed=0) -> FeatureTable:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(E, dtype=torch.bool)
    mask[list(missing)] = False
    return FeatureTable(torch.randn(E, dim, generator=g), mask, {"modality": "image"})


def mans(missing=(), **options) -> MANSSampler:
    return build_sampler(SamplerOptions(name="mans", **options), E, {"image": image_table(missing)})


def build(name, features=None, **options):
    entry = get_model(name)
    context = BuildContext(num_entities=E, num_relations=R, features=features or {},
                           generator=torch.Generator().manual_seed(0))
    return entry.build(entry.options(**options), context)


# ---------------------------------------------------------------------------------------------- uniform


def test_uniform_sampler_is_the_draw_of_the_loss_before_samplers():
    # the loss drew torch.randint(0, E, (B, n)) from the global RNG; the default sampler must draw the same
    answers = torch.tensor([0, 3, 5])
    torch.manual_seed(7)
    drawn = UniformSampler(E).sample(answers, answers, answers, 4)
    torch.manual_seed(7)
    assert torch.equal(drawn.entities, torch.randint(0, E, (3, 4))) and drawn.image_only is None


def test_transe_loss_with_the_default_sampler_is_the_margin_loss_on_randint_negatives():
    model = build("transe", dim=4, num_negatives=3, p=2, margin=1.0)
    heads, relations, tails = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    torch.manual_seed(3)
    loss, _ = model.loss(TrainBatch(heads, relations, tails))
    torch.manual_seed(3)
    negatives = torch.randint(0, E, (4, 3))
    e = F.normalize(model.entity, dim=-1) if model.options.normalize_entities else model.entity
    score = lambda h, r, t: -(e[h] + model.relation[r] - e[t]).norm(dim=-1)
    by_hand = torch.stack([F.relu(1.0 - score(heads, relations, tails) + score(heads, relations, negatives[:, j]))
                           for j in range(3)], dim=1).mean(1).mean()
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)


# ---------------------------------------------------------------------------------------------- MANS draws


def test_uniform_excluding_equals_a_slow_reference_on_the_same_random_numbers():
    pool = torch.tensor([0, 2, 3, 5, 8])
    answers = torch.tensor([2, 4, 8, 0, 5, 7])
    drawn = uniform_excluding(answers, pool, 50, torch.Generator().manual_seed(1))
    u = torch.rand((len(answers), 50), generator=torch.Generator().manual_seed(1))
    for i, answer in enumerate(answers.tolist()):
        eligible = [e for e in pool.tolist() if e != answer]  # the entities it may draw, in order
        expected = [eligible[min(int(x * len(eligible)), len(eligible) - 1)] for x in u[i].tolist()]
        assert drawn[i].tolist() == expected


def test_mans_visual_negatives_never_repeat_the_answer_and_always_have_an_image():
    sampler = mans(missing=(1, 6), mode="visual")
    answers = torch.arange(E).repeat(40)
    drawn = sampler.sample(answers, answers, answers, 10, torch.Generator().manual_seed(0))
    assert drawn.image_only.all()
    assert not (drawn.entities == answers.unsqueeze(1)).any()
    assert not torch.isin(drawn.entities, torch.tensor([1, 6])).any()
    # uniform over the E - 2 - 1 (or E - 2 for an answer without image) other entities with an image
    counts = torch.bincount(drawn.entities[answers == 0].flatten(), minlength=E)
    assert set(torch.nonzero(counts).flatten().tolist()) == {2, 3, 4, 5, 7, 8}
    assert counts.max() < 2 * counts[counts > 0].min()


def test_mans_hybrid_makes_the_first_share_of_negatives_visual_in_negative_major_order():
    sampler = mans(mode="hybrid", visual_share=0.4)
    answers = torch.tensor([0, 1, 2, 3, 4])
    drawn = sampler.sample(answers, answers, answers, 3, torch.Generator().manual_seed(0))
    # 0.4 * 5 * 3 = 6 visual negatives: negative 0 of all five queries, then negative 1 of query 0
    expected = torch.zeros(5, 3, dtype=torch.bool)
    expected[:, 0] = True
    expected[0, 1] = True
    assert torch.equal(drawn.image_only, expected)
    assert not (drawn.entities == answers.unsqueeze(1)).any()
    assert not mans(mode="hybrid", visual_share=0.0).sample(answers, answers, answers, 3).image_only.any()


def test_mans_two_stage_switches_after_its_visual_steps_and_checkpoints_its_step_count():
    sampler = mans(mode="two_stage", visual_steps=2)
    answers = torch.tensor([0, 1])
    stages = [bool(sampler.sample(answers, answers, answers, 2).image_only.all()) for _ in range(3)]
    assert stages == [True, True, False]
    again = mans(mode="two_stage", visual_steps=2)
    again.load_state_dict(sampler.state_dict())
    assert not again.sample(answers, answers, answers, 2).image_only.any()
    fresh = mans(mode="two_stage", visual_steps=1).eval()  # draws outside training do not count
    fresh.sample(answers, answers, answers, 2)
    assert fresh.sample(answers, answers, answers, 2).image_only.all()


def test_mans_adaptive_share_is_the_share_of_negatives_closer_across_modalities():
    model = build("ikrl", {"image": image_table()}, dim=6, p=1, sampler=SamplerOptions("mans", mode="adaptive"))
    heads, relations, answers = torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 3]), torch.tensor([4, 5, 6, 7])
    drawn = model.sampler.sample(heads, relations, answers, 5, torch.Generator().manual_seed(2), model=model)
    normal = uniform_excluding(answers, torch.arange(E), 5, torch.Generator().manual_seed(2))
    n = lambda x: F.normalize(x, dim=-1)
    s, v, r = model.entity, model.inputs("image", None), n(model.relation)
    cross_lower = 0
    for i in range(4):
        for j in range(5):
            h, t, rel = heads[i], normal[i, j], r[relations[i]]
            d = [(n(a) + rel - n(b)).abs().sum() for a, b in ((s[h], s[t]), (v[h], v[t]), (v[h], s[t]), (s[h], v[t]))]
            cross_lower += int(d[2] + d[3] < d[0] + d[1])
    assert 0 < cross_lower < 20  # both kinds occur at this init, so the share is not trivially 0 or 1
    assert int(drawn.image_only.sum()) == int(cross_lower / 20 * 4 * 5)
    assert torch.equal(drawn.entities[~drawn.image_only], normal[~drawn.image_only])
    with pytest.raises(ValueError, match="adaptive needs"):
        get_model("adamf").options(sampler=SamplerOptions("mans", mode="adaptive"))


def test_mans_draws_are_reproducible_under_a_seeded_generator():
    answers = torch.tensor([0, 4, 4, 8])
    first = mans().sample(answers, answers, answers, 6, torch.Generator().manual_seed(5))
    second = mans().sample(answers, answers, answers, 6, torch.Generator().manual_seed(5))
    third = mans().sample(answers, answers, answers, 6, torch.Generator().manual_seed(6))
    assert torch.equal(first.entities, second.entities) and torch.equal(first.image_only, second.image_only)
    assert not torch.equal(first.entities, third.entities)


# ---------------------------------------------------------------------------------------------- models


def test_ikrl_scores_a_visual_negative_with_the_answers_structure_and_the_drawn_image():
    image = image_table()
    model = build("ikrl", {"image": image}, dim=6, p=2, sampler=SamplerOptions("mans"))
    heads, relations = torch.tensor([0, 1]), torch.tensor([0, 3])
    answers, sources = torch.tensor([2, 3]), torch.tensor([[5, 6], [7, 2]])
    rows = model.entity_rows_with_image(answers.unsqueeze(1).expand(2, 2), sources)
    scores = model.score_candidate_rows(heads, relations, rows)
    n = lambda x: F.normalize(x, dim=-1)
    projection = model.inputs.projections["image"]
    s, v = model.entity, projection(image.features)
    r = n(model.relation)
    for i in range(2):
        for j in range(2):
            h, t, t_img = heads[i], answers[i], sources[i, j]
            rel = r[relations[i]]
            energy = sum((n(a) + rel - n(b)).norm() for a, b in
                         ((s[h], s[t]), (v[h], v[t_img]), (s[h], v[t_img]), (v[h], s[t])))
            assert scores[i, j].item() == pytest.approx(-energy.item(), rel=1e-5)


def test_adamf_fuses_the_drawn_image_with_the_answers_other_parts():
    image, text = image_table(), image_table(seed=1)
    model = build("adamf", {"image": image, "text": text}, dim=3, sampler=SamplerOptions("mans"))
    ids, image_ids = torch.tensor([[1, 2]]), torch.tensor([[4, 5]])
    parts = [model.entity[ids], model.inputs("image", image_ids), model.inputs("text", ids)]
    expected = model.fuse(parts)[0]
    got = model.entity_rows_with_image(ids, image_ids)
    assert torch.allclose(torch.cat([got.real, got.imag], -1), expected)


def test_mans_loss_trains_ikrl_and_counts_its_steps():
    model = build("ikrl", {"image": image_table()}, dim=6, num_negatives=4,
                  sampler=SamplerOptions("mans", mode="two_stage", visual_steps=1))
    batch = TrainBatch(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]))
    loss, _ = model.loss(batch)
    loss.backward()
    assert model.entity.grad is not None and model.inputs.projections["image"].weight.grad is not None
    assert int(model.sampler.steps) == 1 and "sampler.steps" in model.state_dict()


def test_mans_needs_image_features():
    with pytest.raises(ConfigError, match="needs image features"):
        build_sampler(SamplerOptions("mans"), E, {})
    with pytest.raises(ConfigError, match="at least two entities with an image"):
        mans(missing=range(1, E))


def write_image_file(path, entities):
    g = torch.Generator().manual_seed(0)
    table = FeatureTable(torch.randn(len(entities), 8, generator=g), torch.ones(len(entities), dtype=torch.bool),
                         base_metadata("image", "test", "random", "none", entities))
    save_features(path, table)
    return str(path)


def test_config_rejects_mans_on_a_model_without_image_part(tmp_path):
    from momok.config import load_config

    (tmp_path / "c.yaml").write_text("dataset: {path: kg}\nmodel:\n  name: transe\n  sampler: {name: mans}\n")
    with pytest.raises(ConfigError, match=r"c.yaml:4: model.sampler: mans swaps the image part"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("dataset: {path: kg}\nfeatures: {text: t}\n"
                                     "model: {name: tbkgc, modalities: [structure, text], sampler: {name: mans}}\n")
    with pytest.raises(ConfigError, match="mans swaps the image part"):
        load_config(tmp_path / "d.yaml")
    (tmp_path / "e.yaml").write_text("dataset: {path: kg}\nfeatures: {image: i}\n"
                                     "model: {name: ikrl, sampler: {name: mans, visual_share: 1.5}}\n")
    with pytest.raises(ConfigError, match=r"e.yaml:3: model.sampler.visual_share: must be in \[0, 1\]"):
        load_config(tmp_path / "e.yaml")
    config = load_config(tmp_path / "e.yaml", ["model.sampler.visual_share=0.25"])
    sampler = config.to_dict()["model"]["sampler"]
    assert {k: sampler[k] for k in ("name", "mode", "visual_share", "visual_steps")} == {
        "name": "mans", "mode": "hybrid", "visual_share": 0.25, "visual_steps": 1000}


def test_ikrl_with_mans_resumes_like_an_uninterrupted_run(tmp_path, monkeypatch):
    from test_training import numbers, train_until_interrupted, write_kg

    from momok.config import config_from_dict
    from momok.data.datasets import load_dataset
    from momok.training import train

    kg = write_kg(tmp_path / "kg")
    image = write_image_file(tmp_path / "image.safetensors", load_dataset(kg).entities)
    raw = {"seed": 0, "dataset": {"path": str(kg)}, "features": {"image": image},
           "model": {"name": "ikrl", "dim": 8, "num_negatives": 4,
                     "sampler": {"name": "mans", "mode": "two_stage", "visual_steps": 3}},
           "training": {"epochs": 3, "batch_size": 64, "device": "cpu"}, "evaluation": {"patience": None}}
    straight = train(config_from_dict(raw), tmp_path / "straight", progress=False)
    train_until_interrupted(config_from_dict(raw), tmp_path / "resumed", monkeypatch)
    resumed = train(config_from_dict(raw), tmp_path / "resumed", resume=True, progress=False)
    assert numbers(resumed) == numbers(straight)
    other = train(config_from_dict({**raw, "seed": 1}), tmp_path / "other", progress=False)
    assert numbers(other) != numbers(straight)


# ---------------------------------------------------------------------------------------------- toy


@pytest.mark.slow
def test_ikrl_with_mans_learns_the_toy_graph(toy_with_features, tmp_path):
    # Measured on this toy (seed 0, 30 epochs, test MRR; random ranking 0.021): uniform negatives 0.053,
    # MANS two-stage (100 visual steps) 0.053, adaptive 0.051, hybrid (β = 0.5) 0.045; visual only
    # 0.024 (20 epochs: visual negatives alone never contrast two entities' structure embeddings).
    # MANS does not beat the uniform sampler here, so only learning is asserted.
    from baseline_runs import random_mrr, test_mrr, train_on

    root, features = toy_with_features
    image = {"image": features["image"]}
    for sampler, factor in (({"name": "mans", "mode": "two_stage", "visual_steps": 100}, 2.0),
                            ({"name": "mans", "mode": "hybrid", "visual_share": 0.5}, 1.5)):
        model = {"name": "ikrl", "dim": 32, "num_negatives": 32, "sampler": sampler}
        mrr = test_mrr(train_on(root, tmp_path / sampler["mode"], model, epochs=30, features=image))
        print(f"ikrl + mans {sampler['mode']}: test MRR {mrr:.4f} (random ranking {random_mrr(300):.4f})")
        assert mrr > factor * random_mrr(300), (sampler, mrr)
