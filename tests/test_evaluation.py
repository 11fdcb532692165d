"""Filtered ranking and metrics against a slow, obviously-correct reference and against PyKEEN."""

from __future__ import annotations

import pytest
import torch

from momok import evaluation
from momok.errors import MomokError
from momok.evaluation import (
    FilterIndex,
    NaNScoreError,
    collect_ranks,
    evaluate,
    filtered_ranks,
    metrics_table,
    summarize,
)

E, R = 23, 4  # entities, relations (without inverses)


def make_graph(seed: int = 0, known: int = 70, test: int = 25):
    """Random small graph: all triples (train+valid+test, with duplicates) and the test triples."""
    generator = torch.Generator().manual_seed(seed)
    triples = torch.stack(
        [
            torch.randint(0, E, (known,), generator=generator),
            torch.randint(0, R, (known,), generator=generator),
            torch.randint(0, E, (known,), generator=generator),
        ],
        dim=1,
    )
    triples = torch.cat([triples, triples[:5]])  # duplicate lines
    test_rows = torch.randperm(triples.shape[0], generator=generator)[:test]
    return triples, triples[test_rows]


def score_table(seed: int = 1, levels: int = 4) -> torch.Tensor:
    """Integer-valued scores ``[E, 2R, E]`` of every query: few levels, so many ties."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (E, 2 * R, E), generator=generator).float()


def table_score_fn(table: torch.Tensor):
    return lambda entities, relations: table[entities, relations]


# ---------------------------------------------------------------- the slow reference


def reference_known(triples: torch.Tensor) -> dict[tuple[int, int], set[int]]:
    known: dict[tuple[int, int], set[int]] = {}
    for h, r, t in triples.tolist():
        known.setdefault((h, r), set()).add(t)
        known.setdefault((t, r + R), set()).add(h)
    return known


def reference_rank(row: list[float], target: int, filtered: set[int]) -> tuple[float, float, float]:
    """Optimistic, pessimistic, realistic rank of ``target`` by an explicit loop over candidates."""
    better = equal = 0
    for candidate, score in enumerate(row):
        if candidate != target and candidate in filtered:
            continue
        if score > row[target]:
            better += 1
        elif score == row[target]:
            equal += 1  # the target itself included
    optimistic, pessimistic = better + 1, better + equal
    return float(optimistic), float(pessimistic), (optimistic + pessimistic) / 2


def reference_queries(table, test, known):
    """One dict per query: side, relation and the three ranks."""
    queries = []
    for side in ("tail", "head"):
        for h, r, t in test.tolist():
            entity, relation, target = (h, r, t) if side == "tail" else (t, r + R, h)
            ranks = reference_rank(table[entity, relation].tolist(), target, known.get((entity, relation), set()))
            kinds = dict(zip(("optimistic", "pessimistic", "realistic"), ranks))
            queries.append({"side": side, "relation": r, **kinds})
    return queries


def reference_metrics(ranks: list[float]) -> dict:
    n = len(ranks)
    return {
        "mrr": sum(1 / x for x in ranks) / n,
        "mr": sum(ranks) / n,
        "hits@1": sum(x <= 1 for x in ranks) / n,
        "hits@3": sum(x <= 3 for x in ranks) / n,
        "hits@10": sum(x <= 10 for x in ranks) / n,
        "count": n,
    }


def reference_summary(queries, relation_names=None) -> dict:
    summary = {}
    for side in ("both", "head", "tail"):
        chosen = [q for q in queries if side in ("both", q["side"])]
        summary[side] = {
            kind: reference_metrics([q[kind] for q in chosen]) for kind in ("realistic", "optimistic", "pessimistic")
        }
    summary["per_relation"] = {}
    for relation in sorted({q["relation"] for q in queries}):
        metrics = reference_metrics([q["realistic"] for q in queries if q["relation"] == relation])
        name = str(relation) if relation_names is None else relation_names[relation]
        summary["per_relation"][name] = {"realistic": metrics, "count": metrics["count"]}
    return summary


def assert_summary_close(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    assert list(actual["per_relation"]) == list(expected["per_relation"])
    for side in ("both", "head", "tail"):
        for kind, metrics in expected[side].items():
            assert actual[side][kind] == pytest.approx(metrics, rel=1e-12, abs=1e-12), (side, kind)
    for name, entry in expected["per_relation"].items():
        assert actual["per_relation"][name]["count"] == entry["count"]
        assert actual["per_relation"][name]["realistic"] == pytest.approx(entry["realistic"], rel=1e-12), name


# ---------------------------------------------------------------- FilterIndex


def test_known_mask_matches_python_sets():
    triples, _ = make_graph()
    index = FilterIndex(triples, E, R)
    known = reference_known(triples)
    entities = torch.arange(E).repeat_interleave(2 * R)
    relations = torch.arange(2 * R).repeat(E)
    mask = index.known_mask(entities, relations)
    assert mask.shape == (E * 2 * R, E) and mask.dtype == torch.bool and mask.device == entities.device
    for row, (entity, relation) in enumerate(zip(entities.tolist(), relations.tolist())):
        assert set(mask[row].nonzero().flatten().tolist()) == known.get((entity, relation), set())
    assert index.num_facts == sum(len(answers) for answers in known.values())
    assert index.num_queries == len(known)
    # repeated and unordered queries, and an empty batch
    rows = torch.tensor([5, 0, 5, 17])
    assert torch.equal(index.known_mask(entities[rows], relations[rows]), mask[rows])
    assert index.known_mask(entities[:0], relations[:0]).shape == (0, E)


def test_filter_index_rejects_bad_input():
    triples, _ = make_graph()
    with pytest.raises(ValueError, match="relation id 4"):
        FilterIndex(torch.tensor([[0, R, 1]]), E, R)
    with pytest.raises(ValueError, match=r"\[n, 3\]"):
        FilterIndex(triples[:, :2], E, R)
    index = FilterIndex(triples, E, R)
    with pytest.raises(ValueError, match="relation id 8"):
        index.known_mask(torch.tensor([0]), torch.tensor([2 * R]))
    with pytest.raises(ValueError, match="entity id -1"):
        index.known_mask(torch.tensor([-1]), torch.tensor([0]))


# ---------------------------------------------------------------- filtered_ranks


@pytest.mark.parametrize("block_elements", [2**20, 7 * E, E // 2])
def test_filtered_ranks_match_reference_with_ties(monkeypatch, block_elements):
    """Also when a CPU batch is ranked in blocks of rows (7 rows, and one row at a time)."""
    monkeypatch.setattr(evaluation, "CPU_BLOCK_ELEMENTS", block_elements)
    generator = torch.Generator().manual_seed(3)
    batch = 40
    scores = torch.randint(0, 3, (batch, E), generator=generator).float()
    targets = torch.randint(0, E, (batch,), generator=generator)
    known = torch.rand(batch, E, generator=generator) < 0.3
    known[::2, :] |= torch.nn.functional.one_hot(targets, E).bool()[::2]  # half the targets are known answers
    ranks = filtered_ranks(scores, targets, known)
    as_pairs = filtered_ranks(scores, targets, known.nonzero(as_tuple=True))
    assert all(torch.equal(a, b) for a, b in zip(ranks, as_pairs))
    for row in range(batch):
        filtered = set(known[row].nonzero().flatten().tolist())
        expected = reference_rank(scores[row].tolist(), int(targets[row]), filtered)
        assert (float(ranks.optimistic[row]), float(ranks.pessimistic[row]), float(ranks.realistic[row])) == expected
    assert ranks.realistic.dtype.is_floating_point


def test_sign_counting_equals_comparisons():
    """The two counting kernels of filtered_ranks agree on floats with ties (the ranking picks one)."""
    generator = torch.Generator().manual_seed(5)
    scores = torch.randn(30, E, generator=generator).round(decimals=1)  # many ties
    target_scores = scores[torch.arange(30), torch.randint(0, E, (30,), generator=generator)].unsqueeze(1)
    by_sign = evaluation._count_by_sign(scores, target_scores)
    by_comparison = evaluation._count_by_comparison(scores, target_scores)
    assert all(torch.equal(a, b) for a, b in zip(by_sign, by_comparison))


def test_target_is_never_filtered():
    scores = torch.tensor([[3.0, 5.0, 1.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    targets = torch.tensor([2, 1])
    everything = torch.ones(2, 4, dtype=torch.bool)
    ranks = filtered_ranks(scores, targets, everything)
    assert ranks.optimistic.tolist() == [1.0, 1.0]
    assert ranks.pessimistic.tolist() == [1.0, 1.0]
    nothing = torch.zeros(2, 4, dtype=torch.bool)
    unfiltered = filtered_ranks(scores, targets, nothing)
    assert unfiltered.optimistic.tolist() == [4.0, 1.0]  # 3 better; no one better
    assert unfiltered.pessimistic.tolist() == [4.0, 4.0]  # all four tie in row 1
    assert unfiltered.realistic.tolist() == [4.0, 2.5]


def test_infinite_scores_are_ranked_exactly():
    inf = float("inf")
    scores = torch.tensor([[-inf, -inf, 2.0, -inf], [inf, inf, 0.0, 1.0]])
    known = torch.tensor([[True, False, False, False], [False, True, False, False]])
    ranks = filtered_ranks(scores, torch.tensor([1, 0]), known)
    # row 0: candidates {1 (target), 2, 3}: one better, the target ties with 3
    # row 1: candidates {0 (target), 2, 3}: none better, no tie
    assert ranks.optimistic.tolist() == [2.0, 1.0]
    assert ranks.pessimistic.tolist() == [3.0, 1.0]


def test_nan_scores_raise():
    scores = torch.zeros(3, E)
    scores[1, 4] = float("nan")
    with pytest.raises(NaNScoreError, match="1 of 3 queries contain NaN.*row 1"):
        filtered_ranks(scores, torch.tensor([0, 1, 2]), torch.zeros(3, E, dtype=torch.bool))
    assert issubclass(NaNScoreError, MomokError) and issubclass(NaNScoreError, ValueError)
    # a non-finite sum without NaN is fine
    scores[1, 4] = float("inf")
    scores[2, 4] = float("-inf")
    filtered_ranks(scores, torch.tensor([0, 1, 2]), torch.zeros(3, E, dtype=torch.bool))


def test_filtered_ranks_checks_shapes():
    with pytest.raises(ValueError, match="targets"):
        filtered_ranks(torch.zeros(2, E), torch.tensor([0]), torch.zeros(2, E, dtype=torch.bool))
    with pytest.raises(ValueError, match="known"):
        filtered_ranks(torch.zeros(2, E), torch.tensor([0, 1]), torch.zeros(2, E))
    with pytest.raises(ValueError, match="target id 23"):
        filtered_ranks(torch.zeros(2, E), torch.tensor([0, E]), torch.zeros(2, E, dtype=torch.bool))


# ---------------------------------------------------------------- evaluate / collect_ranks / summarize


@pytest.mark.parametrize("batch_size", [1, 7, 1000])
def test_evaluate_matches_reference(batch_size):
    triples, test = make_graph()
    table = score_table()
    names = [f"rel{r}" for r in range(R)]
    result = evaluate(
        table_score_fn(table), test, num_entities=E, num_relations=R,
        filter_index=FilterIndex(triples, E, R), batch_size=batch_size, relation_names=names, device="cpu",
    )
    assert list(result) == ["score"]
    expected = reference_summary(reference_queries(table, test, reference_known(triples)), names)
    assert_summary_close(result["score"], expected)
    # every triple is among the known ones, so every target is a known answer and is still ranked
    assert result["score"]["both"]["realistic"]["count"] == 2 * test.shape[0]


def test_filtering_changes_ranks_when_other_answers_score_higher():
    triples, test = make_graph()
    table = score_table()
    score_fn = table_score_fn(table)
    filtered = evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=FilterIndex(triples, E, R))
    # filtering with only the test triples themselves removes nothing but the target -> the raw ranks
    raw = evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=FilterIndex(test[:1], E, R))
    expected_raw = reference_summary(reference_queries(table, test, {}))
    assert_summary_close(raw["score"], {**expected_raw, "per_relation": raw["score"]["per_relation"]})
    assert filtered["score"]["both"]["realistic"]["mrr"] > raw["score"]["both"]["realistic"]["mrr"]
    # and a known answer that outscores the target is exactly what filtering removes
    scores = torch.tensor([[0.0, 2.0, 1.0]])
    known = torch.tensor([[False, True, False]])
    assert filtered_ranks(scores, torch.tensor([2]), known).realistic.tolist() == [1.0]
    assert filtered_ranks(scores, torch.tensor([2]), ~known & known).realistic.tolist() == [2.0]


def two_key_scores():
    """(test triples, filter index, a score_fn giving "joint" and "v", their two score tables)."""
    triples, test = make_graph()
    first, second = score_table(seed=1), score_table(seed=2, levels=9)

    def score_fn(entities, relations):
        return {"joint": first[entities, relations], "v": second[entities, relations]}

    return test, FilterIndex(triples, E, R), score_fn, first, second


def test_dict_valued_score_fn():
    test, index, score_fn, first, second = two_key_scores()
    result = evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=index, batch_size=6)
    assert list(result) == ["joint", "v"]
    for key, table in (("joint", first), ("v", second)):
        alone = evaluate(table_score_fn(table), test, num_entities=E, num_relations=R, filter_index=index)["score"]
        assert result[key] == alone
    assert result["joint"] != result["v"]


def test_keys_rank_only_the_chosen_scores():
    """``keys`` (per-epoch validation: the selection key only) gives that key's summary exactly as a full
    evaluation does, and nothing else; a key the score_fn lacks is a clear error."""
    test, index, score_fn, _, _ = two_key_scores()
    everything = evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=index, batch_size=6)
    chosen = evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=index, batch_size=6,
                      keys=["joint"])
    assert list(chosen) == ["joint"]
    assert chosen["joint"] == everything["joint"]
    with pytest.raises(ValueError, match="without"):
        evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=index, keys=["s"])
    with pytest.raises(ValueError, match="at least one"):
        evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=index, keys=[])


def test_collect_ranks_layout_and_summarize():
    triples, test = make_graph()
    table = score_table()
    collected = collect_ranks(table_score_fn(table), test, num_entities=E, num_relations=R,
                              filter_index=FilterIndex(triples, E, R), batch_size=4)["score"]
    n = test.shape[0]
    assert len(collected) == 2 * n
    assert collected.is_head.tolist() == [False] * n + [True] * n
    assert collected.relation.tolist() == test[:, 1].tolist() * 2
    assert collected.triple.tolist() == list(range(n)) * 2
    queries = reference_queries(table, test, reference_known(triples))
    for kind in ("optimistic", "pessimistic", "realistic"):
        assert collected.rank(kind).tolist() == [q[kind] for q in queries]
    heads_only = collected.select(collected.is_head)
    assert len(heads_only) == n and bool(heads_only.is_head.all())
    assert summarize(collected) == evaluate(table_score_fn(table), test, num_entities=E, num_relations=R,
                                            filter_index=FilterIndex(triples, E, R))["score"]


def test_evaluate_errors():
    triples, test = make_graph()
    index = FilterIndex(triples, E, R)
    table = score_table()
    nan_table = table.clone()
    nan_table[test[0, 0], test[0, 1]] = float("nan")
    with pytest.raises(NaNScoreError, match="score 'j'"):
        evaluate(lambda e, r: {"j": nan_table[e, r]}, test, num_entities=E, num_relations=R, filter_index=index)
    with pytest.raises(ValueError, match=r"shape \(4, 23\)"):
        evaluate(lambda e, r: table[e, r][:, :-1], test, num_entities=E, num_relations=R,
                 filter_index=index, batch_size=4)
    with pytest.raises(ValueError, match="filter_index was built"):
        evaluate(table_score_fn(table), test, num_entities=E + 1, num_relations=R, filter_index=index)
    with pytest.raises(ValueError, match="no triples"):
        evaluate(table_score_fn(table), test[:0], num_entities=E, num_relations=R, filter_index=index)
    with pytest.raises(ValueError, match="3 names for 4 relations"):
        evaluate(table_score_fn(table), test, num_entities=E, num_relations=R, filter_index=index,
                 relation_names=["a", "b", "c"])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_same_results_on_every_available_device(device):
    triples, test = make_graph()
    table = score_table()
    index = FilterIndex(triples, E, R)
    entities, relations = test[:, 0].to(device), test[:, 1].to(device)
    mask = index.known_mask(entities, relations)
    assert mask.device.type == device
    assert torch.equal(mask.cpu(), index.known_mask(test[:, 0], test[:, 1]))
    on_device = table.to(device)
    result = evaluate(lambda e, r: on_device[e, r], test, num_entities=E, num_relations=R,
                      filter_index=index, device=device, batch_size=8)
    expected = evaluate(table_score_fn(table), test, num_entities=E, num_relations=R, filter_index=index)
    assert result == expected


def test_evaluate_runs_without_gradients():
    triples, test = make_graph()
    weights = torch.randn(E, E, requires_grad=True)
    seen = []

    def score_fn(entities, relations):
        seen.append(torch.is_grad_enabled())
        return weights[entities] + relations[:, None].float()

    evaluate(score_fn, test, num_entities=E, num_relations=R, filter_index=FilterIndex(triples, E, R))
    assert seen and not any(seen)


def test_metrics_table():
    triples, test = make_graph()
    index = FilterIndex(triples, E, R)
    table = score_table()
    result = evaluate(lambda e, r: {"joint": table[e, r], "s": -table[e, r]}, test,
                      num_entities=E, num_relations=R, filter_index=index)
    text = metrics_table(result)
    lines = text.splitlines()
    assert len(lines) == 2 and lines[0].startswith("joint") and lines[1].startswith("s ")
    assert f"MRR {result['joint']['both']['realistic']['mrr']:.4f}" in lines[0]
    assert f"{2 * test.shape[0]} queries" in lines[1]
    assert metrics_table(result["joint"]).startswith("score")


# ---------------------------------------------------------------- PyKEEN


def test_matches_pykeen_rank_based_evaluator():
    """Same scores and filter through PyKEEN's own filtering and RankBasedEvaluator."""
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.evaluation.evaluator import create_sparse_positive_filter_, filter_scores_

    triples, test = make_graph(seed=5, known=90, test=30)
    table = score_table(seed=6, levels=5)
    ours = evaluate(table_score_fn(table), test, num_entities=E, num_relations=R,
                    filter_index=FilterIndex(triples, E, R), batch_size=11)["score"]

    evaluator = RankBasedEvaluator(filtered=True)
    rows = torch.arange(test.shape[0])
    heads, relations, tails = test.unbind(1)
    for target, column, scores in (
        ("tail", 2, table[heads, relations]),  # scores[b, e] of (h, r, e)
        ("head", 0, table[tails, relations + R]),  # scores[b, e] of (e, r, t), asked as (t, r + R, e)
    ):
        scores = scores.clone()
        true_scores = scores[rows, test[:, column]].clone()
        positives, _ = create_sparse_positive_filter_(test, all_pos_triples=triples, filter_col=column)
        scores = filter_scores_(scores, positives)
        scores[rows, test[:, column]] = true_scores
        evaluator.process_scores_(test, target=target, scores=scores, true_scores=true_scores[:, None])
    theirs = evaluator.finalize()

    names = {"mrr": "inverse_harmonic_mean_rank", "mr": "arithmetic_mean_rank",
             "hits@1": "hits_at_1", "hits@3": "hits_at_3", "hits@10": "hits_at_10"}
    compared = 0
    for side in ("both", "head", "tail"):
        for kind in ("realistic", "optimistic", "pessimistic"):
            for ours_name, pykeen_name in names.items():
                expected = theirs.get_metric(f"{side}.{kind}.{pykeen_name}")
                assert ours[side][kind][ours_name] == pytest.approx(expected, abs=1e-6), (side, kind, ours_name)
                compared += 1
    assert compared == 45
    # the scores have enough ties for the rank types to differ
    assert ours["both"]["optimistic"]["mrr"] > ours["both"]["pessimistic"]["mrr"] + 0.01
