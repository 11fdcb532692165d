"""``momok train`` and ``momok evaluate`` on a tiny KG with a tiny DistMult-like 1-N model."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from momok import cli
from momok.config import load_config
from momok.errors import ConfigError, InputError, MomokError
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.registry import BuildContext, ModelEntry
from momok.training import make_optimisers, train, training_queries

# ---------------------------------------------------------------------------------------------
# A tiny model and a tiny dataset


@dataclass
class TinyOptions:
    """Options of the test model (the config loader validates them like any model's)."""

    dim: int = 8
    modalities: list[str] = field(default_factory=lambda: ["structure"])
    use_labels: bool = False  # multi-label BCE on TrainBatch.labels instead of softmax CE on tails
    estimator: bool = False  # a second parameter group trained on estimator_loss
    diagnostics: bool = False
    dropout: float = 0.0  # on the query entity while training (draws from torch's global RNG)
    unlearn_after_steps: int | None = None  # flip the loss sign after this many steps (validation peaks early)
    fail_at_step: int | None = None  # raise inside loss() after this many steps (8 steps make an epoch)


class TinyModel(LinkPredictor):
    """A bilinear (RESCAL-like) 1-N scorer ``e_h W_r E^T``; an image feature projection is added to
    the entity embeddings when the image modality is configured."""

    ranking_key = "joint"

    def __init__(self, options: TinyOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        self.entity = nn.Embedding(context.num_entities, options.dim)
        self.relation = nn.Embedding(2 * context.num_relations, options.dim * options.dim)
        nn.init.normal_(self.entity.weight, std=0.3)
        nn.init.normal_(self.relation.weight, std=0.3)
        self.image = None
        if "image" in options.modalities and "image" in context.features:
            self.register_buffer("image_features", context.features["image"].features.clone())
            self.image = nn.Linear(self.image_features.shape[1], options.dim)
        self.probe = nn.Parameter(torch.zeros(options.dim)) if options.estimator else None
        self.steps = 0  # not saved in checkpoints: only the test switches below read it

    def embeddings(self) -> torch.Tensor:
        if self.image is None:
            return self.entity.weight
        return self.entity.weight + self.image(self.image_features)

    def scores(self, heads, relations):
        table = self.embeddings()
        matrices = self.relation(relations).view(-1, self.options.dim, self.options.dim)
        drop = nn.functional.dropout
        query = drop(self.entity.weight[heads], self.options.dropout, self.training).unsqueeze(1)
        structure = torch.bmm(query, matrices).squeeze(1) @ self.entity.weight.T
        query = drop(table[heads], self.options.dropout, self.training).unsqueeze(1)
        joint = torch.bmm(query, matrices).squeeze(1) @ table.T
        return {"s": structure, "joint": joint}

    def loss(self, batch: TrainBatch):
        if self.steps == self.options.fail_at_step:
            raise RuntimeError("failing on purpose")
        self.steps += 1
        joint = self.scores(batch.heads, batch.relations)["joint"]
        if self.options.use_labels:
            assert batch.labels is not None and batch.labels.shape == joint.shape
            assert batch.labels[torch.arange(len(batch.tails)), batch.tails].all()
            loss = nn.functional.binary_cross_entropy_with_logits(joint, batch.labels.float())
        else:
            assert batch.labels is None
            loss = nn.functional.cross_entropy(joint, batch.tails)
        if self.options.unlearn_after_steps is not None and self.steps > self.options.unlearn_after_steps:
            loss = -loss
        return loss, {"loss": float(loss.detach()), "ce": float(loss.detach().abs())}

    def needs_labels(self):
        return self.options.use_labels

    def estimator_parameters(self):
        return [] if self.probe is None else [self.probe]

    def estimator_loss(self, batch):
        if self.probe is None:
            return None
        target = self.entity.weight[batch.heads].detach().mean(0)
        return ((self.probe - target) ** 2).sum()

    def diagnostics(self, heads, relations):
        if not self.options.diagnostics:
            return {}
        r = self.relation(relations)
        return {"alpha": torch.softmax(r[:, :2], dim=1), "gate_s": torch.softmax(r[:, 2:5], dim=1)}


def build_tiny(options: TinyOptions, context: BuildContext) -> TinyModel:
    return TinyModel(options, context)


@pytest.fixture(autouse=True)
def tiny_model(monkeypatch):
    """Register the test model as "tiny" for the duration of a test."""
    from momok.models import registry

    monkeypatch.setitem(registry._REGISTRY, "tiny", ModelEntry(TinyOptions, build_tiny))
    torch.set_num_threads(1)


def write_kg(root: Path, num_entities: int = 24, seed: int = 0) -> Path:
    """A small KG with learnable patterns in the benchmark layout; ~80/10/10 split of the triples.

    Entity ``i`` is in group ``i % 4``; relation k links each entity to two random members of group
    ``g + k`` (mod 4), so a held-out triple is predictable from the others of its groups.
    """
    rng = torch.Generator().manual_seed(seed)
    names = [f"ent{i}" for i in range(num_entities)]
    relations = ["same", "next", "skip"]
    triples = []
    for h in range(num_entities):
        for k in range(len(relations)):
            group = [t for t in range(num_entities) if t % 4 == (h + k) % 4 and t != h]
            for j in torch.randperm(len(group), generator=rng)[:2].tolist():
                triples.append((h, k, group[j]))
    order = torch.randperm(len(triples), generator=rng).tolist()
    triples = [triples[k] for k in order]
    n_valid = n_test = len(triples) // 10
    splits = {"valid": triples[:n_valid], "test": triples[n_valid:n_valid + n_test],
              "train": triples[n_valid + n_test:]}
    root.mkdir(parents=True, exist_ok=True)
    (root / "entity2id.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    (root / "relation2id.txt").write_text("".join(f"{n} {i}\n" for i, n in enumerate(relations)))
    for split, rows in splits.items():
        (root / f"{split}.txt").write_text("".join(f"{names[h]} {relations[r]} {names[t]} .\n" for h, r, t in rows))
    return root


def write_features(path: Path, entities: list[str], dim: int = 4, *, rows: int | None = None,
                   nan_row: int | None = None) -> Path:
    """A random image feature file for ``entities`` (or a broken one: other row count, NaN row)."""
    from momok.features.store import FeatureTable, base_metadata, save_features

    n = len(entities) if rows is None else rows
    features = torch.randn(n, dim, generator=torch.Generator().manual_seed(1))
    metadata = base_metadata("image", "encoder", "random-test", "none", entities[:n] if n <= len(entities)
                             else entities + [f"x{i}" for i in range(n - len(entities))])
    save_features(path, FeatureTable(features, torch.ones(n, dtype=torch.bool), metadata))
    if nan_row is not None:  # save_features refuses NaN, so patch the file's tensor directly
        from safetensors.torch import load_file, save_file
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        tensors = load_file(str(path))
        tensors["features"][nan_row, 0] = float("nan")
        save_file(tensors, str(path), metadata=meta)
    return path


def write_config(path: Path, dataset: Path, **sections) -> Path:
    config = {
        "seed": 3,
        "dataset": {"path": str(dataset)},
        "model": {"name": "tiny", "dim": 8},
        "training": {"epochs": 4, "batch_size": 32, "lr": 0.05, "device": "cpu", "num_threads": 1},
        "evaluation": {"every": 1, "patience": None, "batch_size": 32},
    }
    for name, values in sections.items():
        if isinstance(values, dict):
            config.setdefault(name, {}).update(values)
        else:
            config[name] = values
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kg(tmp_path) -> Path:
    return write_kg(tmp_path / "kg")


def numbers(metrics: dict) -> dict:
    """The parts of metrics.json that must be reproducible (everything but timings)."""
    return {k: v for k, v in metrics.items() if k != "timing"}


def read_history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def train_until_interrupted(config, out: Path, monkeypatch) -> None:
    """Run ``train`` and interrupt it (Ctrl-C) as soon as the history of its second epoch is written,
    before that epoch's checkpoint: ``checkpoint/last.pt`` then holds epoch 1."""
    import momok.training as training

    original, calls = training._write_history, {"n": 0}

    def interrupt_at_second_epoch(run_dir, rows):
        original(run_dir, rows)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(training, "_write_history", interrupt_at_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(config, out, progress=False)
    monkeypatch.setattr(training, "_write_history", original)


# ---------------------------------------------------------------------------------------------
# Tests


def test_diagnostic_columns_flatten_nested_diagnostics():
    from momok.diagnostics import diagnostic_columns

    columns = diagnostic_columns({"alpha": torch.tensor([[0.2, 0.8], [0.5, 0.5]]), "tau": torch.tensor([1.0, 2.0]),
                                  "gates": {"s": torch.tensor([[0.1, 0.9], [0.3, 0.7]])}})
    assert list(columns) == ["alpha_0", "alpha_1", "tau", "gates_s_0", "gates_s_1"]
    assert columns["alpha_1"].tolist() == pytest.approx([0.8, 0.5])
    assert columns["gates_s_0"].tolist() == pytest.approx([0.1, 0.3])


def test_training_queries_add_inverses_and_distinct_queries():
    train_triples = torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 1]])
    queries = training_queries(train_triples, 2, distinct=False)
    assert queries.tolist() == [[0, 0, 1], [0, 0, 2], [3, 1, 1], [1, 2, 0], [2, 2, 0], [1, 3, 3]]
    distinct = training_queries(train_triples, 2, distinct=True)
    assert distinct.tolist() == [[0, 0, 1], [3, 1, 1], [1, 2, 0], [2, 2, 0], [1, 3, 3]]


@pytest.mark.parametrize("leftover", [1, 2])
def test_a_last_batch_of_one_query_joins_the_batch_before(tmp_path, kg, monkeypatch, leftover):
    """Batch norm (MoMoK's Tucker scorers) cannot train on one row: no batch may hold a single query."""
    from momok.data.datasets import load_dataset

    dataset = load_dataset(kg)
    count = len(training_queries(dataset.train, dataset.num_relations, distinct=False))
    sizes = []
    original = TinyModel.loss

    def recording_loss(self, batch):
        sizes.append(len(batch.heads))
        return original(self, batch)

    monkeypatch.setattr(TinyModel, "loss", recording_loss)
    size = count - leftover
    config = load_config(write_config(tmp_path / "c.yaml", kg, training={"epochs": 1, "batch_size": size}))
    train(config, tmp_path / "run", progress=False)
    assert sizes == ([count] if leftover == 1 else [size, leftover])


def test_estimator_parameters_are_not_in_the_model_optimiser(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"estimator": True}))
    from momok.models.registry import build_model

    model = build_model("tiny", config.model.options, BuildContext(24, 3))
    optimiser, estimator_optimiser, _ = make_optimisers(config, model)
    main_ids = {id(p) for g in optimiser.param_groups for p in g["params"]}
    assert id(model.probe) not in main_ids
    assert {id(p) for g in estimator_optimiser.param_groups for p in g["params"]} == {id(model.probe)}
    assert main_ids == {id(p) for n, p in model.named_parameters() if n != "probe"}


def test_train_writes_the_run_folder_and_learns(tmp_path, kg):
    config = write_config(tmp_path / "c.yaml", kg, model={"estimator": True, "diagnostics": True},
                          training={"epochs": 6})
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    for name in ("config.yaml", "metrics.json", "history.csv", "weights.csv", "checkpoint/best.pt",
                 "checkpoint/last.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["valid"]) == set(metrics["test"]) == {"s", "joint"}
    assert metrics["test"]["joint"]["both"]["realistic"]["count"] == 2 * len((kg / "test.txt").read_text().splitlines())
    # far better than a random ranking of 24 entities (MRR about 0.16)
    assert metrics["valid"]["joint"]["both"]["realistic"]["mrr"] > 0.4
    assert metrics["feature_sources"] == {}
    history = read_history(out)
    assert [int(row["epoch"]) for row in history] == list(range(1, 7))
    assert {"loss", "ce", "estimator_loss", "valid_mrr", "lr", "seconds"} <= set(history[0])
    assert float(history[-1]["loss"]) < float(history[0]["loss"])
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["provenance"]["momok_version"]
    assert saved["training"]["batch_size"] == 32 and saved["model"]["estimator"] is True
    assert load_config(out / "config.yaml").to_dict() == load_config(config).to_dict()
    with open(out / "weights.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["relation", "relation_name", "direction", "count",
                             "alpha_0", "alpha_1", "gate_s_0", "gate_s_1", "gate_s_2"]
    assert {r["direction"] for r in rows} == {"tail", "head"}
    test_lines = (kg / "test.txt").read_text().splitlines()
    assert sum(int(r["count"]) for r in rows if r["direction"] == "tail") == len(test_lines)
    assert all(abs(float(r["alpha_0"]) + float(r["alpha_1"]) - 1) < 1e-5 for r in rows)


def test_weights_csv_is_the_mean_over_test_queries_of_each_relation(tmp_path, kg):
    """weights.csv against a direct computation from the best checkpoint."""
    from momok.data.datasets import load_dataset
    from momok.models.registry import build_model

    config_path = write_config(tmp_path / "c.yaml", kg, model={"diagnostics": True}, training={"epochs": 1})
    out = tmp_path / "run"
    train(load_config(config_path), out, progress=False)
    config = load_config(config_path)
    data = load_dataset(kg)
    model = build_model("tiny", config.model.options, BuildContext(data.num_entities, data.num_relations))
    model.load_state_dict(torch.load(out / "checkpoint/best.pt")["model"])
    with open(out / "weights.csv", newline="") as f:
        rows = {(int(r["relation"]), r["direction"]): r for r in csv.DictReader(f)}
    R = data.num_relations
    for (h, r, t) in data.test.tolist()[:3]:
        for direction, entity, relation in (("tail", h, r), ("head", t, r + R)):
            same = [(hh if direction == "tail" else tt) for hh, rr, tt in data.test.tolist() if rr == r]
            with torch.no_grad():
                gates = model.diagnostics(torch.tensor(same), torch.full((len(same),), relation))["gate_s"]
            row = rows[(r, direction)]
            assert int(row["count"]) == len(same) and row["relation_name"] == data.relations[r]
            assert float(row["gate_s_1"]) == pytest.approx(float(gates[:, 1].mean()), abs=1e-6)


def test_same_seed_gives_identical_metrics(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"estimator": True}, training={"epochs": 3}))
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    assert numbers(first) == numbers(second)
    assert json.loads((tmp_path / "a/metrics.json").read_text())["test"] == first["test"]
    other = train(load_config(write_config(tmp_path / "d.yaml", kg, seed=4, training={"epochs": 3})),
                  tmp_path / "c", progress=False)
    assert other["test"] != first["test"]


@pytest.mark.parametrize("changes", [
    {"model": {"estimator": True, "dropout": 0.2}, "training": {"lr_schedule": "exponential", "lr_decay": 0.7}},
    {"model": {"use_labels": True}, "training": {"label_batching": True, "lr_schedule": "cosine", "grad_clip": 0.5}},
])
def test_resumed_run_ends_like_an_uninterrupted_one(tmp_path, kg, changes, monkeypatch):
    straight = train(load_config(write_config(tmp_path / "c.yaml", kg, **changes)), tmp_path / "straight",
                     progress=False)
    # the same run stopped after 2 of its 4 epochs (its config then had epochs: 2 ... but a resumed
    # run must use the same config, so stop it by an interruption instead)
    config_path = write_config(tmp_path / "c.yaml", kg, **changes)
    config = load_config(config_path)
    train_until_interrupted(config, tmp_path / "resumed", monkeypatch)
    assert not (tmp_path / "resumed/metrics.json").exists()
    assert torch.load(tmp_path / "resumed/checkpoint/last.pt", weights_only=False)["loop"]["epoch"] == 1
    with pytest.raises(ConfigError, match="--resume"):
        train(config, tmp_path / "resumed", progress=False)
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    assert numbers(resumed) == numbers(straight)
    assert read_history(tmp_path / "resumed") == [
        {**row, "seconds": row2["seconds"]} for row, row2 in
        zip(read_history(tmp_path / "straight"), read_history(tmp_path / "resumed"))]
    # a finished run is left as it is
    assert train(config, tmp_path / "resumed", resume=True, progress=False) == resumed


def test_resume_with_checkpoint_every_two_epochs(tmp_path, kg):
    """4 epochs straight vs. 2 epochs, a crash during epoch 3, and --resume (last.pt from epoch 2)."""
    config = load_config(write_config(tmp_path / "c.yaml", kg, output={"checkpoint_every": 2}))
    straight = train(config, tmp_path / "straight", progress=False)
    failing = load_config(write_config(tmp_path / "f.yaml", kg, output={"checkpoint_every": 2},
                                       model={"fail_at_step": 16}))
    with pytest.raises(RuntimeError, match="on purpose"):
        train(failing, tmp_path / "resumed", progress=False)
    assert not (tmp_path / "resumed/metrics.json").exists()
    saved = torch.load(tmp_path / "resumed/checkpoint/last.pt", weights_only=False)
    assert saved["loop"]["epoch"] == 2
    # the resumed config must equal the interrupted one: patch the saved copy as a user fixing a bug would not
    with pytest.raises(ConfigError, match="model.fail_at_step"):
        train(config, tmp_path / "resumed", resume=True, progress=False)
    saved["config"]["model"]["fail_at_step"] = None
    torch.save(saved, tmp_path / "resumed/checkpoint/last.pt")
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    assert numbers(resumed) == numbers(straight)


def test_the_best_validation_checkpoint_is_tested(tmp_path, kg):
    from momok.commands.evaluate import evaluate_checkpoint

    # learns for 2 epochs (8 steps of 16 queries ~ 2 epochs), then unlearns: validation peaks early
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"unlearn_after_steps": 16},
                                      training={"epochs": 6}))
    metrics = train(config, tmp_path / "run", progress=False)
    history = read_history(tmp_path / "run")
    values = [float(row["valid_mrr"]) for row in history]
    assert metrics["best_epoch"] == 1 + values.index(max(values)) < 6
    assert values[-1] < max(values) - 0.05
    assert metrics["selection"]["value"] == pytest.approx(max(values))
    # test metrics are those of best.pt, not of the final weights in last.pt
    assert evaluate_checkpoint(tmp_path / "run", "test") == metrics["test"]
    last = torch.load(tmp_path / "run/checkpoint/last.pt", weights_only=False)
    torch.save({"model": last["model"], "epoch": 6}, tmp_path / "run/checkpoint/best.pt")
    assert evaluate_checkpoint(tmp_path / "run", "test")["joint"] != metrics["test"]["joint"]


def test_validation_evaluates_the_selection_key_alone(tmp_path, kg, monkeypatch):
    """Per-epoch validation ranks ``ranking_scores`` (the selection key) only; its summary is the full
    evaluation's entry for that key, and the final evaluation still reports every key."""
    from momok.assembly import all_triples_filter, build_run, evaluate_model

    config = load_config(write_config(tmp_path / "c.yaml", kg, training={"epochs": 2}))
    run = build_run(config, torch.device("cpu"))
    index = all_triples_filter(run.dataset)
    full = evaluate_model(run, run.dataset.valid, index)
    assert sorted(full) == ["joint", "s"]
    assert evaluate_model(run, run.dataset.valid, index, selection_only=True) == {"joint": full["joint"]}

    calls = []
    original = TinyModel.ranking_scores
    monkeypatch.setattr(TinyModel, "ranking_scores", lambda self, h, r: calls.append(len(h)) or original(self, h, r))
    metrics = train(config, tmp_path / "run", progress=False)
    assert sum(calls) == 2 * 2 * run.dataset.valid.shape[0]  # two validations, both sides of each triple
    assert sorted(metrics["valid"]) == sorted(metrics["test"]) == ["joint", "s"]
    values = [float(row["valid_mrr"]) for row in read_history(tmp_path / "run")]
    assert metrics["valid"]["joint"]["both"]["realistic"]["mrr"] == pytest.approx(values[metrics["best_epoch"] - 1])


def test_early_stopping_with_patience(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"unlearn_after_steps": 16},
                                      training={"epochs": 30}, evaluation={"patience": 2, "every": 2}))
    metrics = train(config, tmp_path / "run", progress=False)
    history = read_history(tmp_path / "run")
    assert metrics["stopped_early"] and metrics["epochs_run"] == len(history) < 30
    evaluated = [row for row in history if row["valid_mrr"]]
    assert [int(row["epoch"]) for row in evaluated] == list(range(2, len(history) + 1, 2))
    best = max(range(len(evaluated)), key=lambda i: float(evaluated[i]["valid_mrr"]))
    assert len(evaluated) - 1 - best == 2  # stopped at the second validation without improvement
    assert metrics["best_epoch"] == int(evaluated[best]["epoch"])


def test_evaluate_command_reproduces_metrics(tmp_path, kg):
    config = write_config(tmp_path / "c.yaml", kg, training={"epochs": 5, "device": "auto"})
    out = tmp_path / "run"
    assert cli.main(["train", "--config", str(config), "--out", str(out), "--quiet", "--device", "cpu",
                     "--set", "training.epochs=2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["timing"]["device"] == "cpu"
    for split in ("test", "valid"):
        target = tmp_path / f"{split}.json"
        assert cli.main(["evaluate", "--checkpoint", str(out), "--split", split, "--out", str(target)]) == 0
        assert json.loads(target.read_text()) == metrics[split]


def test_features_are_loaded_and_recorded(tmp_path, kg):
    from momok.data.datasets import load_dataset

    image = write_features(tmp_path / "image.safetensors", load_dataset(kg).entities)
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"modalities": ["structure", "image"]},
                                      features={"image": str(image)}, training={"epochs": 1}))
    metrics = train(config, tmp_path / "run", progress=False)
    source = metrics["feature_sources"]["image"]
    assert source["path"] == str(image) and source["encoder"] == "random-test" and source["modality"] == "image"
    best = torch.load(tmp_path / "run/checkpoint/best.pt")["model"]
    assert "image.weight" in best


@pytest.mark.parametrize("problem, match", [
    ("rows", "rows but the dataset has 24 entities"),
    ("nan", "NaN"),
    ("absent", "feature file not found"),
])
def test_bad_feature_files_fail_before_training(tmp_path, kg, problem, match):
    from momok.data.datasets import load_dataset

    entities = load_dataset(kg).entities
    image = tmp_path / "image.safetensors"
    if problem == "rows":
        write_features(image, entities, rows=20)
    elif problem == "nan":
        write_features(image, entities, nan_row=5)
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"modalities": ["structure", "image"]},
                                      features={"image": str(image)}))
    with pytest.raises(InputError, match=match) as err:
        train(config, tmp_path / "run", progress=False)
    assert str(image) in str(err.value)
    assert not (tmp_path / "run/metrics.json").exists() and not (tmp_path / "run/history.csv").exists()


def test_cli_reports_bad_config_in_one_line(tmp_path, kg, capsys):
    config = write_config(tmp_path / "c.yaml", kg, model={"modalities": ["structure", "image"]})
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "features.image" in err and "allow_missing" in err and "Traceback" not in err
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet",
                     "--set", "training.epochz=3"]) == 2
    assert "--set training.epochz=3: training.epochz: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_failed_run_leaves_no_metrics(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"fail_at_step": 3}))
    with pytest.raises(RuntimeError, match="on purpose"):
        train(config, tmp_path / "run", progress=False)
    assert (tmp_path / "run/config.yaml").is_file()
    assert not (tmp_path / "run/metrics.json").exists()
    assert [p.name for p in (tmp_path / "run").rglob("*.tmp")] == []


def test_diverged_training_is_an_error(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, training={"lr": 1e30}))
    with pytest.raises(MomokError):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run/metrics.json").exists()


# ---------------------------------------------------------------------------------------------
# The real MoMoK model (its own generator, dropouts, batch norm, CLUB estimators) on a small toy


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory) -> Path:
    from momok.data.toy import make_toy

    return make_toy(tmp_path_factory.mktemp("toy") / "toy", 0, entities=40, relations=3, triples=240, max_images=0)


def momok_config(path: Path, dataset: Path, **model) -> Path:
    return write_config(path, dataset, model={
        "name": "momok", "modalities": ["structure"], "dim": 8, "relation_dim": 8, "num_experts": 2,
        "exid_weight": 0.01, **model}, training={"epochs": 3, "batch_size": 64, "lr": 0.01})


def test_momok_resumes_exactly_and_evaluate_reproduces_it(tmp_path, small_toy, monkeypatch):
    from momok.commands.evaluate import evaluate_checkpoint

    config = load_config(momok_config(tmp_path / "c.yaml", small_toy, club_pairs="random"))
    straight = train(config, tmp_path / "straight", progress=False)
    assert {"s", "j", "joint"} <= set(straight["test"])
    history = read_history(tmp_path / "straight")
    assert float(history[0]["estimator_loss"]) != 0.0  # the CLUB estimators were trained

    train_until_interrupted(config, tmp_path / "resumed", monkeypatch)
    resumed = train(config, tmp_path / "resumed", resume=True, progress=False)
    assert numbers(resumed) == numbers(straight)
    assert evaluate_checkpoint(tmp_path / "straight", "test") == straight["test"]
    with open(tmp_path / "straight/weights.csv", newline="") as f:
        header = next(csv.reader(f))
    assert header[:4] == ["relation", "relation_name", "direction", "count"] and len(header) > 4


def test_bf16_autocast_on_cpu_and_option_errors_before_the_run_folder(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, training={"epochs": 1, "amp": "bf16"}))
    metrics = train(config, tmp_path / "bf16", progress=False)
    assert 0 < metrics["test"]["joint"]["both"]["realistic"]["mrr"] <= 1
    for training_options, match in [({"amp": "fp16"}, "fp16 needs CUDA"),
                                    ({"label_batching": True}, "does not read labels")]:
        config = load_config(write_config(tmp_path / "c.yaml", kg, training=training_options))
        with pytest.raises(ConfigError, match=match):
            train(config, tmp_path / "bad", progress=False)
        assert not (tmp_path / "bad").exists()


def test_relative_paths_resolve_against_the_working_directory(tmp_path, kg, monkeypatch):
    from momok.data.datasets import load_dataset

    write_features(tmp_path / "image.safetensors", load_dataset(kg).entities)
    (tmp_path / "configs").mkdir()
    config = write_config(tmp_path / "configs/c.yaml", Path("kg"), features={"image": "image.safetensors"},
                          model={"modalities": ["structure", "image"]}, training={"epochs": 1})
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "--config", "configs/c.yaml", "--out", "run", "--quiet"]) == 0
    assert json.loads((tmp_path / "run/metrics.json").read_text())["feature_sources"]["image"]["path"] == \
        "image.safetensors"
    monkeypatch.chdir(tmp_path / "configs")  # from elsewhere the same relative paths name nothing
    with pytest.raises(InputError, match="dataset folder not found"):
        train(load_config(config), tmp_path / "run2", progress=False)


# ---------------------------------------------------------------------------------------------
# What a --out folder may already hold (momok.training.plan_start) and checkpoint safety


class _RunsCode:
    """Unpickling this object runs code (touches a file): what a crafted checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, kg, monkeypatch):
    config = load_config(write_config(tmp_path / "c.yaml", kg))
    train_until_interrupted(config, tmp_path / "run", monkeypatch)
    marker = tmp_path / "pwned"
    last = tmp_path / "run/checkpoint/last.pt"
    saved = torch.load(last, weights_only=True)  # what momok writes loads without pickle
    saved["loop"]["history"] = _RunsCode(marker)
    torch.save(saved, last)
    with pytest.raises(InputError, match="refused: the file holds Python objects") as err:
        train(config, tmp_path / "run", resume=True, progress=False)
    assert str(last) in str(err.value) and not marker.exists()
    best = tmp_path / "run/checkpoint/best.pt"
    torch.save({"model": _RunsCode(marker), "epoch": 1}, best)
    (tmp_path / "run/metrics.json").write_text("{}")  # so that evaluate finds a finished-looking run
    from momok.commands.evaluate import evaluate_checkpoint

    with pytest.raises(InputError, match="refused"):
        evaluate_checkpoint(tmp_path / "run")
    assert not marker.exists()


@pytest.mark.parametrize("which", ["last", "best"])
def test_a_truncated_checkpoint_is_a_clear_error(tmp_path, kg, monkeypatch, which):
    config = load_config(write_config(tmp_path / "c.yaml", kg))
    train_until_interrupted(config, tmp_path / "run", monkeypatch)
    path = tmp_path / f"run/checkpoint/{which}.pt"
    path.write_bytes(path.read_bytes()[:300])
    if which == "last":
        with pytest.raises(InputError, match="truncated or not a momok checkpoint") as err:
            train(config, tmp_path / "run", resume=True, progress=False)
        # --restart-stale starts such a run afresh instead, and ends like a straight run
        restarted = train(config, tmp_path / "run", resume=True, restart_stale=True, progress=False)
        assert numbers(restarted) == numbers(train(config, tmp_path / "straight", progress=False))
    else:
        from momok.commands.evaluate import evaluate_checkpoint

        with pytest.raises(InputError, match="truncated or not a momok checkpoint") as err:
            evaluate_checkpoint(tmp_path / "run")
    assert str(path) in str(err.value)


def test_out_must_be_a_new_empty_or_run_folder(tmp_path, kg):
    config = load_config(write_config(tmp_path / "c.yaml", kg, training={"epochs": 1}))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(InputError, match="--out must be a folder"):
        train(config, a_file, progress=False)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "history.csv").write_text("my own numbers\n")
    for resume in (False, True):
        with pytest.raises(InputError, match="holds no momok run"):
            train(config, foreign, resume=resume, restart_stale=resume, progress=False)
    assert a_file.read_text() == "mine" and (foreign / "history.csv").read_text() == "my own numbers\n"
    assert sorted(p.name for p in foreign.iterdir()) == ["history.csv"]
    (tmp_path / "empty").mkdir()
    assert train(config, tmp_path / "empty", progress=False)["epochs_run"] == 1


def test_resume_refuses_a_run_with_another_config(tmp_path, kg):
    config_path = write_config(tmp_path / "c.yaml", kg, training={"epochs": 2})
    finished = train(load_config(config_path), tmp_path / "run", progress=False)
    assert train(load_config(config_path, ["training.num_threads=2"]), tmp_path / "run", resume=True,
                 progress=False) == finished  # thread count may differ
    changed = load_config(config_path, ["model.dim=16"])
    with pytest.raises(ConfigError, match="config differs in model.dim"):
        train(changed, tmp_path / "run", resume=True, progress=False)
    assert json.loads((tmp_path / "run/metrics.json").read_text()) == json.loads(json.dumps(finished))
    restarted = train(changed, tmp_path / "run", resume=True, restart_stale=True, progress=False)
    assert numbers(restarted) == numbers(train(changed, tmp_path / "straight", progress=False))
    assert yaml.safe_load((tmp_path / "run/config.yaml").read_text())["model"]["dim"] == 16


def test_resume_refuses_a_swapped_feature_file(tmp_path, kg, monkeypatch):
    from momok.data.datasets import load_dataset

    entities = load_dataset(kg).entities
    image = write_features(tmp_path / "image.safetensors", entities)
    config = load_config(write_config(tmp_path / "c.yaml", kg, model={"modalities": ["structure", "image"]},
                                      features={"image": str(image)}))
    train_until_interrupted(config, tmp_path / "run", monkeypatch)
    assert torch.load(tmp_path / "run/checkpoint/last.pt", weights_only=True)["feature_digests"]["image"]
    from momok.features.store import load_features, save_features

    table = load_features(image)
    table.features.mul_(2.0)  # same shape and metadata, other numbers
    save_features(image, table)
    with pytest.raises(ConfigError, match="image feature file differs"):
        train(config, tmp_path / "run", resume=True, progress=False)
    restarted = train(config, tmp_path / "run", resume=True, restart_stale=True, progress=False)
    assert restarted["feature_sources"]["image"]["sha256"] == __import__("hashlib").sha256(
        image.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="image feature file differs"):  # a finished run is checked too
        table.features.mul_(2.0)
        save_features(image, table)
        train(config, tmp_path / "run", resume=True, progress=False)


def test_failed_runs_are_marked_and_restart_stale_starts_them_afresh(tmp_path, kg):
    failing = load_config(write_config(tmp_path / "f.yaml", kg, model={"fail_at_step": 9}))
    with pytest.raises(RuntimeError, match="on purpose"):
        train(failing, tmp_path / "run", progress=False)
    assert "on purpose" in (tmp_path / "run/FAILED").read_text()
    fixed = load_config(write_config(tmp_path / "c.yaml", kg))
    with pytest.raises(ConfigError, match="failed run"):
        train(fixed, tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="config differs in model.fail_at_step"):
        train(fixed, tmp_path / "run", resume=True, progress=False)
    metrics = train(fixed, tmp_path / "run", resume=True, restart_stale=True, progress=False)
    assert not (tmp_path / "run/FAILED").exists()
    assert numbers(metrics) == numbers(train(fixed, tmp_path / "straight", progress=False))


def test_temporary_files_of_a_killed_run_are_removed_on_resume(tmp_path, kg, monkeypatch):
    config = load_config(write_config(tmp_path / "c.yaml", kg))
    train_until_interrupted(config, tmp_path / "run", monkeypatch)
    left = [tmp_path / "run/.metrics.json.abc123.tmp", tmp_path / "run/checkpoint/.last.pt.x9.tmp"]
    for path in left:
        path.write_bytes(b"half")
    train(config, tmp_path / "run", resume=True, progress=False)
    assert not any(path.exists() for path in left)


def test_run_files_follow_the_umask(tmp_path, kg):
    import os

    old = os.umask(0o022)
    try:
        train(load_config(write_config(tmp_path / "c.yaml", kg, training={"epochs": 1})), tmp_path / "run",
              progress=False)
    finally:
        os.umask(old)
    for path in (tmp_path / "run").rglob("*"):
        if path.is_file():
            assert path.stat().st_mode & 0o777 == 0o644, path


@pytest.mark.parametrize("arguments, expected", [
    (["--out", "{file}"], "--out must be a folder"),
    (["--out", "{foreign}"], "holds no momok run"),
    (["--out", "{run}", "--resume", "--set", "model.dim=16"], "config differs in model.dim"),
    (["--out", "{run}", "--restart-stale"], "--restart-stale: only applies with --resume"),
    (["--out", "{run}", "--resume", "--set", "training.epochz=3"], "training.epochz: unknown key"),
])
def test_momok_train_reports_bad_run_folders_in_one_line(tmp_path, kg, capsys, arguments, expected):
    config = write_config(tmp_path / "c.yaml", kg, training={"epochs": 1})
    (tmp_path / "file").write_text("x")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("x")
    assert cli.main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    folders = {"file": tmp_path / "file", "foreign": tmp_path / "foreign", "run": tmp_path / "run"}
    arguments = [a.format(**folders) for a in arguments]
    assert cli.main(["train", "--config", str(config), "--quiet", *arguments]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
