"""Speed of filtered ranking on the real MKG-W test split (4274 triples -> 8548 queries x 15000 candidates).

Times, on the current machine:
1. building the :class:`~momok.evaluation.FilterIndex` over train + valid + test;
2. :func:`~momok.evaluation.collect_ranks` on precomputed random scores (the known answers, the ranking
   and the gather of each batch's rows from a table with one random row per distinct (entity, relation)
   query are timed);
3. the same with a cheap score function (a DistMult-style matmul of random embeddings), scoring included;
4. two naive references on subsets of the queries, checked against the fast ranks and extrapolated
   to speed ratios: a Python loop over queries that filters with Python sets (each row compared with
   torch ops), and a pure-Python loop over queries and candidates.

Run from the repository root:  ``python benchmarks/bench_evaluation.py [--data DIR] [--threads N]``.
Needs about 0.6 GB of memory for the score matrix.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch

from momok.data.datasets import load_dataset
from momok.evaluation import FilterIndex, collect_ranks
from momok.utils import reuse_freed_memory

REPO_ROOT = Path(__file__).resolve().parents[1]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=REPO_ROOT / "../shared/datasets/MKG-W", help="dataset folder (benchmark layout)"
    )
    parser.add_argument("--batch-size", type=int, default=256, help="queries per score_fn call")
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions of each fast measurement")
    parser.add_argument("--naive-queries", type=int, default=500, help="queries ranked by the naive reference")
    parser.add_argument(
        "--pure-python-queries", type=int, default=50, help="queries ranked by the pure-Python reference"
    )
    parser.add_argument("--dim", type=int, default=200, help="embedding size of the matmul score function")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random scores and embeddings")
    return parser.parse_args()


def timed(function, repeats: int) -> tuple[list[float], object]:
    """Wall times of ``repeats`` calls of ``function`` and its last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def naive_ranks(scores: torch.Tensor, entities, relations, targets, known: dict) -> list[tuple[float, float]]:
    """(optimistic, pessimistic) per query: a Python loop over queries, filter sets of known answers."""
    out = []
    for row, entity, relation, target in zip(scores, entities.tolist(), relations.tolist(), targets.tolist()):
        filtered = known.get((entity, relation), set()) - {target}
        keep = torch.ones(row.numel(), dtype=torch.bool)
        if filtered:
            keep[list(filtered)] = False
        target_score = row[target]
        out.append((1.0 + float(((row > target_score) & keep).sum()), float(((row >= target_score) & keep).sum())))
    return out


def pure_python_ranks(scores: torch.Tensor, entities, relations, targets, known: dict) -> list[tuple[float, float]]:
    """(optimistic, pessimistic) per query: Python loops over queries and over candidates."""
    out = []
    for row, entity, relation, target in zip(scores.tolist(), entities.tolist(), relations.tolist(), targets.tolist()):
        filtered = known.get((entity, relation), set()) - {target}
        better = better_or_equal = 0
        for candidate, score in enumerate(row):
            if candidate not in filtered:
                better += score > row[target]
                better_or_equal += score >= row[target]
        out.append((1.0 + better, float(better_or_equal)))
    return out


def report(label: str, times: list[float], queries: int) -> None:
    best = min(times)
    print(
        f"{label}: best {best:.3f} s, median {statistics.median(times):.3f} s over {len(times)} runs "
        f"-> {queries / best:,.0f} queries/s"
    )


def main() -> None:
    args = parse_args()
    reuse_freed_memory()  # as the momok command does
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)

    start = time.perf_counter()
    dataset = load_dataset(args.data)
    print(f"dataset {dataset.name}: loaded in {time.perf_counter() - start:.2f} s")
    num_entities, num_relations = dataset.num_entities, dataset.num_relations
    test = dataset.test
    num_queries = 2 * test.shape[0]
    print(
        f"entities {num_entities}, relations {num_relations}, test triples {test.shape[0]} -> {num_queries} queries; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch size {args.batch_size}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (other processes slow the timings)"
    )

    all_triples = torch.cat([dataset.train, dataset.valid, dataset.test])
    build_times, index = timed(lambda: FilterIndex(all_triples, num_entities, num_relations), args.repeats)
    print(
        f"FilterIndex over {all_triples.shape[0]} triples ({index.num_queries} queries, {index.num_facts} answers): "
        f"best {min(build_times):.3f} s, median {statistics.median(build_times):.3f} s"
    )

    # 1. precomputed scores: one random row per distinct (entity, relation) query, as a model's would be
    #    (collect_ranks scores the queries in its own order); the gather of each batch's rows is timed
    heads, relations, tails = test.unbind(1)
    split_keys = torch.cat([heads, tails]) * (2 * num_relations) + torch.cat([relations, relations + num_relations])
    distinct_keys, row_of_query = torch.unique(split_keys, return_inverse=True)
    table = torch.randn(distinct_keys.numel(), num_entities, generator=generator)

    def precomputed(entities: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        return table[torch.searchsorted(distinct_keys, entities * (2 * num_relations) + relations)]

    def rank_precomputed():
        return collect_ranks(
            precomputed, test, num_entities=num_entities, num_relations=num_relations,
            filter_index=index, batch_size=args.batch_size,
        )["score"]

    rank_times, fast = timed(rank_precomputed, args.repeats)
    report("filtered ranking, precomputed scores (mask + ranks)", rank_times, num_queries)

    # 2. a cheap model: DistMult-style scores from random embeddings, scoring included in the time
    entity_embeddings = torch.randn(num_entities, args.dim, generator=generator)
    relation_embeddings = torch.randn(2 * num_relations, args.dim, generator=generator)

    def matmul(entities: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        return (entity_embeddings[entities] * relation_embeddings[relations]) @ entity_embeddings.T

    matmul_times, _ = timed(
        lambda: collect_ranks(
            matmul, test, num_entities=num_entities, num_relations=num_relations,
            filter_index=index, batch_size=args.batch_size,
        ),
        args.repeats,
    )
    report(f"filtered ranking, matmul score_fn (dim {args.dim}, scoring included)", matmul_times, num_queries)

    # 3. naive reference on a subset, checked against the fast ranks
    start = time.perf_counter()
    known: dict[tuple[int, int], set[int]] = {}
    for head, relation, tail in all_triples.tolist():
        known.setdefault((head, relation), set()).add(tail)
        known.setdefault((tail, relation + num_relations), set()).add(head)
    naive_build = time.perf_counter() - start
    subset = torch.randperm(num_queries, generator=generator)[: max(args.naive_queries, args.pure_python_queries)]
    heads, relations, tails = test.unbind(1)
    entities = torch.cat([heads, tails])[subset]
    query_relations = torch.cat([relations, relations + num_relations])[subset]
    targets = torch.cat([tails, heads])[subset]
    fast_rate = num_queries / min(rank_times)
    agree = True
    for label, function, count in (
        ("naive reference (Python loop over queries, set filters, torch row ops)", naive_ranks, args.naive_queries),
        ("pure-Python reference (loops over queries and candidates)", pure_python_ranks, args.pure_python_queries),
    ):
        chosen = subset[:count]
        start = time.perf_counter()
        ranks = function(table[row_of_query[chosen]], entities[:count], query_relations[:count], targets[:count],
                         known)
        expected = torch.tensor(ranks)
        elapsed = time.perf_counter() - start
        same = torch.equal(expected[:, 0], fast.optimistic[chosen])
        same = same and torch.equal(expected[:, 1], fast.pessimistic[chosen])
        agree &= same
        rate = chosen.numel() / elapsed
        print(
            f"{label}: {chosen.numel()} queries in {elapsed:.3f} s -> {rate:,.1f} queries/s, "
            f"all {num_queries} would take ~{num_queries / rate:.1f} s; ranks identical to the fast path: {same}; "
            f"speed ratio fast / this: {fast_rate / rate:,.1f}x"
        )
    print(f"(Python filter sets built in {naive_build:.2f} s, not counted above)")
    if not agree:
        raise SystemExit("the naive and the fast ranks differ")


if __name__ == "__main__":
    main()
