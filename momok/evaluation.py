"""Filtered link-prediction evaluation: ranks and the rank-based metrics MRR, MR and Hits@k.

Every test triple ``(h, r, t)`` asks two queries: the tail query ``(h, r) -> t`` and the head query
``(t, r + R) -> h`` (``r + R`` is the inverse of ``r``, see :mod:`momok.models.base`). A model scores
every entity as the answer of each query. Under the *filtered* protocol (Bordes et al., 2013) the
other known true answers of the query (from train, valid and test) are removed from the candidates
before the target is ranked; the target itself always stays.

Ties are handled as in PyKEEN (Berrendorf et al., 2020):

* optimistic rank = 1 + number of kept candidates scored strictly higher than the target;
* pessimistic rank = number of kept candidates scored higher than or equal to the target
  (the target included);
* realistic rank = the mean of the two, the expected rank under a random order of the ties.

Layers, lowest first: :class:`FilterIndex` (known answers, as index pairs or a dense mask per batch),
:func:`filtered_ranks` (one batch of score rows), :func:`collect_ranks` (every query of a split, with
its side and relation), :func:`summarize` (metrics of collected ranks) and :func:`evaluate` (all of
it); :func:`metrics_table` formats a summary for logs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from momok.errors import MomokError

__all__ = [
    "HITS_AT",
    "RANK_TYPES",
    "FilterIndex",
    "NaNScoreError",
    "QueryRanks",
    "Ranks",
    "collect_ranks",
    "evaluate",
    "filtered_ranks",
    "metrics_table",
    "summarize",
]

#: the k of every reported Hits@k
HITS_AT: tuple[int, ...] = (1, 3, 10)
#: the rank types of a summary, in PyKEEN's naming
RANK_TYPES: tuple[str, ...] = ("realistic", "optimistic", "pessimistic")

ScoreFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | Mapping[str, torch.Tensor]"]


class NaNScoreError(MomokError, ValueError):
    """A score matrix handed to the ranking contains NaN (usually a diverged model)."""


class FilterIndex:
    """Every known true answer of every ``(entity, relation)`` query, inverse relations included.

    ``triples`` are ``(h, r, t)`` rows *without* inverses, ``r`` in ``0..R-1`` with
    ``R = num_relations``; usually train, valid and test concatenated. ``(h, r, t)`` makes ``t`` a
    known answer of ``(h, r)`` and ``h`` a known answer of ``(t, r + R)``. Duplicate triples are fine.

    Storage is compact (CSR): the sorted distinct query keys ``entity * 2R + relation``, the offsets
    of each key's answers, and the answers themselves (sorted within a key), all int64 on the CPU.
    Copies on other devices are made on first use and kept.
    """

    def __init__(self, triples: torch.Tensor, num_entities: int, num_relations: int):
        if num_entities <= 0 or num_relations <= 0:
            raise ValueError(f"num_entities ({num_entities}) and num_relations ({num_relations}) must be positive")
        triples = _check_triples(triples, num_entities, num_relations).to("cpu", torch.int64)
        self.num_entities = int(num_entities)
        self.num_relations = int(num_relations)
        heads, relations, tails = triples.unbind(1)
        query_keys = torch.cat([heads, tails]) * (2 * num_relations) + torch.cat([relations, relations + num_relations])
        answers = torch.cat([tails, heads])
        # one code per distinct (query, answer) pair; sorting it sorts by query, then by answer
        codes = torch.unique(query_keys * num_entities + answers)  # max E * 2R * E, far below 2**63
        keys, counts = torch.unique_consecutive(codes // num_entities, return_counts=True)
        self._keys = keys
        self._offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
        self._answers = codes % num_entities
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    @property
    def num_queries(self) -> int:
        """The number of distinct ``(entity, relation)`` queries that have at least one known answer."""
        return int(self._keys.numel())

    @property
    def num_facts(self) -> int:
        """The number of distinct ``(query, answer)`` pairs, i.e. twice the number of distinct triples."""
        return int(self._answers.numel())

    def _tensors(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self._keys.to(device), self._offsets.to(device), self._answers.to(device))
        return self._on_device[device]

    def known_pairs(self, entities: torch.Tensor, relations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, columns)``: every known answer ``columns[i]`` of query ``rows[i]`` of the batch
        ``(entities[b], relations[b])``, sorted by row; on the inputs' device, without a Python loop.

        ``relations`` run over ``0..2R-1`` (inverses included).
        """
        if entities.dim() != 1 or entities.shape != relations.shape:
            raise ValueError(
                f"entities and relations must be 1-d and of one length, got {tuple(entities.shape)} "
                f"and {tuple(relations.shape)}"
            )
        if entities.device != relations.device:
            raise ValueError(f"entities are on {entities.device} but relations on {relations.device}")
        device = entities.device
        entities = entities.long()
        relations = relations.long()
        batch = entities.numel()
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        if batch == 0:
            return empty, empty
        _check_range("entity", entities, self.num_entities)
        _check_range("relation", relations, 2 * self.num_relations)
        keys, offsets, answers = self._tensors(device)
        if keys.numel() == 0:
            return empty, empty
        query_keys = entities * (2 * self.num_relations) + relations
        slot = torch.searchsorted(keys, query_keys).clamp_(max=keys.numel() - 1)
        found = keys[slot] == query_keys
        starts = offsets[slot]
        counts = torch.where(found, offsets[slot + 1] - starts, 0)
        total = int(counts.sum())
        if total == 0:
            return empty, empty
        rows = torch.repeat_interleave(torch.arange(batch, device=device), counts, output_size=total)
        # position of each answer inside its query's run: global position minus the run's first position
        run_starts = counts.cumsum(0) - counts
        within = torch.arange(total, device=device) - torch.repeat_interleave(run_starts, counts, output_size=total)
        columns = answers[torch.repeat_interleave(starts, counts, output_size=total) + within]
        return rows, columns

    def known_mask(self, entities: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``BoolTensor[B, E]``, ``True`` where the entity is a known answer of query ``(entities[i], relations[i])``
        (:meth:`known_pairs` scattered into a dense mask on the inputs' device)."""
        rows, columns = self.known_pairs(entities, relations)
        mask = torch.zeros(entities.numel(), self.num_entities, dtype=torch.bool, device=entities.device)
        mask[rows, columns] = True
        return mask


class Ranks(NamedTuple):
    """Filtered ranks of a batch of queries, float ``[B]`` each (see the module docstring)."""

    optimistic: torch.Tensor
    pessimistic: torch.Tensor
    realistic: torch.Tensor


def filtered_ranks(
    scores: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
) -> Ranks:
    """Filtered ranks of ``targets`` in each row of ``scores`` (higher score = better).

    scores: ``[B, E]`` floats; targets: ``LongTensor[B]``, the true answer of each row;
    known: the known answers to filter out, a ``BoolTensor[B, E]`` or distinct ``(rows, columns)`` index pairs
    (:meth:`FilterIndex.known_pairs`). The target is never filtered out, whether or not ``known``
    marks it. Raises :class:`NaNScoreError` when ``scores`` holds a NaN.

    Counting: over all candidates, ``d = sign(s − s_target)`` gives ``Σd = #higher − #lower`` and
    ``Σ|d| = #higher + #lower``, two float sums that are exact integers below 2²⁴ candidates, so
    ``#higher`` and ``#higher or equal = E − #lower`` come from one subtraction and two sums, which
    vectorise (a CPU compares into bools several times slower). The known answers other than the
    target are then taken back from the counts (few per row). Scores with ±inf (where ``s − s_target``
    can be NaN) and 2²⁴ or more candidates are counted with comparisons instead.
    """
    if scores.dim() != 2:
        raise ValueError(f"scores must be [B, E], got shape {tuple(scores.shape)}")
    batch, num_entities = scores.shape
    if targets.shape != (batch,):
        raise ValueError(f"targets must have shape ({batch},), got {tuple(targets.shape)}")
    if isinstance(known, torch.Tensor):
        if known.shape != scores.shape or known.dtype != torch.bool:
            raise ValueError(
                f"known must be a bool tensor of shape {tuple(scores.shape)} or (rows, columns) index pairs, "
                f"got {known.dtype} {tuple(known.shape)}"
            )
        known = known.nonzero(as_tuple=True)
    if num_entities >= 2**31:
        raise ValueError(f"{num_entities} candidates do not fit the int32 counters")
    device = scores.device
    targets = targets.to(device=device, dtype=torch.int64)
    known_rows, known_columns = (t.to(device=device, dtype=torch.int64) for t in known)
    if batch:
        _check_range("target", targets, num_entities)
    # a NaN or inf propagates into the sum; the exact (slower) tests run only when the sum is not finite
    finite = bool(torch.isfinite(scores.sum()))
    if not finite and bool(torch.isnan(scores).any()):
        rows = torch.isnan(scores).any(dim=1).nonzero().flatten()
        raise NaNScoreError(
            f"the scores of {rows.numel()} of {batch} queries contain NaN (first: row {int(rows[0])}); "
            "the model's output is not usable (diverged training?)"
        )
    target_scores = scores[torch.arange(batch, device=device), targets].unsqueeze(1)
    count = _count_by_sign if finite and num_entities < 2**24 else _count_by_comparison
    # On a CPU the passes run over blocks of rows that stay in the cache (about 4 MB of scores), much
    # faster than one pass over a [1024, E] batch (benchmarks/README.md, "Measurements behind code choices").
    block = batch if device.type != "cpu" else max(1, CPU_BLOCK_ELEMENTS // max(num_entities, 1))
    counts = [count(scores[i:i + block], target_scores[i:i + block]) for i in range(0, batch, block)]
    better = torch.cat([c[0] for c in counts]) if counts else scores.new_zeros(0, dtype=torch.int32)
    better_or_equal = torch.cat([c[1] for c in counts]) if counts else better
    # take back the known answers (other than the target) that were counted
    other = known_columns != targets[known_rows]
    known_rows, known_columns = known_rows[other], known_columns[other]
    known_scores, threshold = scores[known_rows, known_columns], target_scores[known_rows, 0]
    better.index_add_(0, known_rows, (known_scores > threshold).to(torch.int32), alpha=-1)
    better_or_equal.index_add_(0, known_rows, (known_scores >= threshold).to(torch.int32), alpha=-1)
    optimistic = better.float() + 1.0
    pessimistic = better_or_equal.float()
    return Ranks(optimistic, pessimistic, 0.5 * (optimistic + pessimistic))


#: rows of scores ranked at once on a CPU: blocks of about this many scores fit the cache
CPU_BLOCK_ELEMENTS = 2**20


def _count_by_sign(scores: torch.Tensor, target_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: candidates scored strictly higher / higher or equal (unfiltered), from sign sums."""
    sign = torch.sub(scores, target_scores).sign_()
    balance = sign.sum(dim=1)  # higher - lower
    unequal = sign.abs_().sum(dim=1)  # higher + lower
    higher = ((balance + unequal) * 0.5).round_().to(torch.int32)
    lower = ((unequal - balance) * 0.5).round_().to(torch.int32)
    return higher, scores.shape[1] - lower


def _count_by_comparison(scores: torch.Tensor, target_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`_count_by_sign`, with comparisons (right for ±inf scores and any number of candidates)."""
    # int32 sums: much faster than the default int64 on CPU, exact below 2**31 candidates
    return ((scores > target_scores).sum(dim=1, dtype=torch.int32),
            (scores >= target_scores).sum(dim=1, dtype=torch.int32))


@dataclass
class QueryRanks:
    """The filtered ranks of every query of a split (``N = 2n`` queries for ``n`` triples), on the CPU.

    Queries ``0..n-1`` are the tail queries ``(h, r) -> t`` of the triples in order, ``n..2n-1`` their
    head queries ``(t, r + R) -> h``.
    """

    #: float ``[N]`` each
    optimistic: torch.Tensor
    pessimistic: torch.Tensor
    realistic: torch.Tensor
    #: ``BoolTensor[N]``: ``True`` for a head query ``(t, r + R) -> h``
    is_head: torch.Tensor
    #: ``LongTensor[N]``: the triple's relation ``r`` in ``0..R-1`` (not ``r + R``)
    relation: torch.Tensor
    #: ``LongTensor[N]``: the row of the query's triple in the evaluated triples
    triple: torch.Tensor

    def rank(self, rank_type: str) -> torch.Tensor:
        """The ranks of one type: ``"realistic"``, ``"optimistic"`` or ``"pessimistic"``."""
        if rank_type not in RANK_TYPES:
            raise ValueError(f"unknown rank type {rank_type!r}; expected one of {RANK_TYPES}")
        return getattr(self, rank_type)

    def select(self, rows: torch.Tensor) -> "QueryRanks":
        """The queries chosen by a bool mask or an index tensor."""
        return QueryRanks(*(getattr(self, name)[rows] for name in self.__dataclass_fields__))

    def __len__(self) -> int:
        return int(self.realistic.numel())


def collect_ranks(
    score_fn: ScoreFn,
    triples: torch.Tensor,
    *,
    num_entities: int,
    num_relations: int,
    filter_index: FilterIndex,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    progress: bool = False,
    keys: Sequence[str] | None = None,
) -> dict[str, QueryRanks]:
    """The filtered ranks of the tail and head query of every triple, one :class:`QueryRanks` per score key.

    score_fn: ``score_fn(entities[B], relations[B])`` returns ``Tensor[B, E]`` (higher = better) or a
    dict of such tensors, one per score (e.g. one per modality and ``"joint"``); a plain tensor gets
    the key ``"score"``. ``relations`` run over ``0..2R-1``. It is called under ``torch.no_grad()``;
    put a model in eval mode before.
    triples: ``LongTensor[n, 3]`` of ``(h, r, t)``, ``r`` in ``0..R-1``.
    filter_index: the known answers to filter (build it over train + valid + test).
    batch_size: queries per ``score_fn`` call; memory grows with ``batch_size * num_entities``.
    device: where the query tensors go before ``score_fn`` is called; ``None`` = the device of
    ``triples``. The ranking runs on the device of the returned scores.
    progress: show a progress bar over the batches.
    keys: rank only these score keys (each must be among what ``score_fn`` returns; the others are
    ignored, not ranked); ``None`` = every key. Per-epoch validation ranks only the selection key.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if filter_index.num_entities != num_entities or filter_index.num_relations != num_relations:
        raise ValueError(
            f"filter_index was built for {filter_index.num_entities} entities and {filter_index.num_relations} "
            f"relations, not {num_entities} and {num_relations}"
        )
    triples = _check_triples(triples, num_entities, num_relations)
    if triples.shape[0] == 0:
        raise ValueError("there are no triples to evaluate")
    if keys is not None and not keys:
        raise ValueError("keys must name at least one score key (or be None for all)")
    query_device = triples.device if device is None else torch.device(device)
    heads, relations, tails = triples.to(query_device, torch.int64).unbind(1)
    # Queries are scored in relation order (ranks come back in query order): a batch then holds few
    # distinct relations, which models that work once per relation of a batch (MoMoK's contracted cores
    # and relation-guided candidates) are faster for. Ranks do not depend on the order.
    query_relations = torch.cat([relations, relations + num_relations])
    order = torch.argsort(query_relations, stable=True)
    query_relations = query_relations[order]
    entities = torch.cat([heads, tails])[order]
    targets = torch.cat([tails, heads])[order]

    parts: dict[str, list[Ranks]] = {}
    starts = range(0, entities.numel(), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc="ranking", unit="batch", disable=not progress):
            batch_entities = entities[start : start + batch_size]
            batch_relations = query_relations[start : start + batch_size]
            output = score_fn(batch_entities, batch_relations)
            named = {"score": output} if isinstance(output, torch.Tensor) else dict(output)
            if not named:
                raise ValueError("score_fn returned an empty dict")
            if keys is not None:
                missing = [key for key in keys if key not in named]
                if missing:
                    raise ValueError(f"score_fn returned the keys {sorted(named)}, without {missing}")
                named = {key: named[key] for key in keys}
            elif parts and set(named) != set(parts):
                raise ValueError(f"score_fn returned the keys {sorted(named)} after {sorted(parts)}")
            known: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
            for key, scores in named.items():
                expected = (batch_entities.numel(), num_entities)
                if not isinstance(scores, torch.Tensor) or tuple(scores.shape) != expected:
                    shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
                    raise ValueError(f"score_fn's score {key!r} must be a tensor of shape {expected}, got {shape}")
                if scores.device not in known:
                    known[scores.device] = filter_index.known_pairs(
                        batch_entities.to(scores.device), batch_relations.to(scores.device)
                    )
                try:
                    ranks = filtered_ranks(scores, targets[start : start + batch_size], known[scores.device])
                except NaNScoreError as error:
                    raise NaNScoreError(f"score {key!r}: {error}") from None
                parts.setdefault(key, []).append(Ranks(*(r.cpu() for r in ranks)))

    n = triples.shape[0]
    is_head = torch.cat([torch.zeros(n, dtype=torch.bool), torch.ones(n, dtype=torch.bool)])
    relation = triples[:, 1].cpu().long().repeat(2)
    triple = torch.arange(n).repeat(2)
    restore = torch.empty_like(order)
    restore[order] = torch.arange(order.numel(), device=order.device)
    restore = restore.cpu()
    return {
        key: QueryRanks(*(torch.cat(column)[restore] for column in zip(*batches)), is_head, relation, triple)
        for key, batches in parts.items()
    }


def _metrics(ranks: torch.Tensor) -> dict[str, float | int]:
    ranks = ranks.double()
    metrics: dict[str, float | int] = {
        "mrr": float(ranks.reciprocal().mean()),
        "mr": float(ranks.mean()),
    }
    for k in HITS_AT:
        metrics[f"hits@{k}"] = float((ranks <= k).double().mean())
    metrics["count"] = int(ranks.numel())
    return metrics


def summarize(ranks: QueryRanks, *, relation_names: Sequence[str] | None = None) -> dict:
    """MRR, MR, Hits@1/3/10 and the query count of collected ranks.

    Returns ``{"both" | "head" | "tail": {"realistic" | "optimistic" | "pessimistic": metrics},
    "per_relation": {name: {"realistic": metrics, "count": n}}}`` where ``metrics`` is
    ``{"mrr", "mr", "hits@1", "hits@3", "hits@10", "count"}``. "both" pools head and tail queries.
    ``per_relation`` pools both sides of the triples of each relation that occurs, in relation-id
    order, keyed by ``relation_names[r]`` when given, else ``str(r)``. Hits@k counts ranks ``<= k``
    (a realistic rank of 10.5 is not a hit at 10), as PyKEEN does.
    """
    if len(ranks) == 0:
        raise ValueError("there are no ranks to summarize")
    sides = {"both": slice(None), "head": ranks.is_head, "tail": ~ranks.is_head}
    summary: dict = {}
    for side, rows in sides.items():
        if isinstance(rows, torch.Tensor) and not bool(rows.any()):
            raise ValueError(f"there are no {side} queries to summarize")
        summary[side] = {rank_type: _metrics(ranks.rank(rank_type)[rows]) for rank_type in RANK_TYPES}
    per_relation = {}
    for relation in torch.unique(ranks.relation).tolist():
        if relation_names is not None and not 0 <= relation < len(relation_names):
            raise ValueError(f"relation id {relation} has no name ({len(relation_names)} names given)")
        name = str(relation) if relation_names is None else relation_names[relation]
        metrics = _metrics(ranks.realistic[ranks.relation == relation])
        per_relation[name] = {"realistic": metrics, "count": metrics["count"]}
    summary["per_relation"] = per_relation
    return summary


def evaluate(
    score_fn: ScoreFn,
    triples: torch.Tensor,
    *,
    num_entities: int,
    num_relations: int,
    filter_index: FilterIndex,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    relation_names: Sequence[str] | None = None,
    progress: bool = False,
    keys: Sequence[str] | None = None,
) -> dict[str, dict]:
    """Filtered evaluation of ``triples`` (both sides): ``{score_key: summary}``.

    The arguments are those of :func:`collect_ranks` (which computes the ranks; ``keys`` chooses the
    score keys) and of :func:`summarize` (which turns them into the summary dict); ``relation_names``
    (length R) names the ``per_relation`` entries.
    """
    if relation_names is not None and len(relation_names) != num_relations:
        raise ValueError(f"relation_names has {len(relation_names)} names for {num_relations} relations")
    collected = collect_ranks(
        score_fn,
        triples,
        num_entities=num_entities,
        num_relations=num_relations,
        filter_index=filter_index,
        batch_size=batch_size,
        device=device,
        progress=progress,
        keys=keys,
    )
    return {key: summarize(ranks, relation_names=relation_names) for key, ranks in collected.items()}


def metrics_table(summary: Mapping) -> str:
    """A short human-readable block of realistic metrics (both sides), one line per score key.

    Accepts one summary (as :func:`summarize` returns) or ``{score_key: summary}`` (as
    :func:`evaluate` returns).
    """
    summaries = {"score": summary} if "both" in summary else summary
    width = max(len(key) for key in summaries) if summaries else 0
    lines = []
    for key, item in summaries.items():
        both = item["both"]["realistic"]
        head = item["head"]["realistic"]["mrr"]
        tail = item["tail"]["realistic"]["mrr"]
        lines.append(
            f"{key:<{width}}  MRR {both['mrr']:.4f}  MR {both['mr']:.1f}  "
            + "  ".join(f"H@{k} {both[f'hits@{k}']:.4f}" for k in HITS_AT)
            + f"  (head MRR {head:.4f}, tail MRR {tail:.4f}; {both['count']} queries, realistic)"
        )
    return "\n".join(lines)


def _check_triples(triples: torch.Tensor, num_entities: int, num_relations: int) -> torch.Tensor:
    """``triples`` as given after checking it is an integer ``[n, 3]`` tensor of in-range ids."""
    if not isinstance(triples, torch.Tensor) or triples.dim() != 2 or triples.shape[1] != 3:
        shape = tuple(triples.shape) if isinstance(triples, torch.Tensor) else type(triples).__name__
        raise ValueError(f"triples must be a [n, 3] tensor of (head, relation, tail) ids, got {shape}")
    if triples.dtype.is_floating_point or triples.dtype.is_complex or triples.dtype == torch.bool:
        raise ValueError(f"triples must hold integer ids, got {triples.dtype}")
    if triples.shape[0]:
        _check_range("head", triples[:, 0], num_entities)
        _check_range("relation", triples[:, 1], num_relations)
        _check_range("tail", triples[:, 2], num_entities)
    return triples


def _check_range(what: str, ids: torch.Tensor, bound: int) -> None:
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= bound:
        bad = low if low < 0 else high
        raise ValueError(f"{what} id {bad} is out of range 0..{bound - 1}")

