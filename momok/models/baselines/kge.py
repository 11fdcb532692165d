"""Uni-modal KGE baselines of Table 2: TransE, DistMult, ComplEx, RotatE, PairRE (PyKEEN interactions).

Every model here is a :class:`~momok.models.base.LinkPredictor` trained by ``momok train`` and scored by
the shared evaluator, exactly like MoMoK. The triple scores are PyKEEN 1.11's interaction modules
(``pykeen.nn.modules.TransEInteraction``, ``DistMultInteraction``, ``ComplExInteraction``,
``RotatEInteraction``, ``PairREInteraction``); what this module adds is the embeddings, memory-bounded
1-N scoring, the three losses and the registration.

Scores (higher = more plausible; the score is what ranks, margins only enter the losses)::

    transe    -‖h + r - t‖_p
    distmult  <h, r, t>
    complex   Re(<h, r, conj(t)>)                     h, r, t ∈ C^d
    rotate    -Σ_k |h_k r_k - t_k|   (p=1, official code)   or  -‖h∘r - t‖_2  (p=2, PyKEEN)   |r_k| = 1
    pairre    -‖h∘r_h - t∘r_t‖_p,    ‖h‖_2 = ‖t‖_2 = 1

**Inverse relations (a departure for the translational models).** Relation ids run over ``0..2R-1``;
``r + R`` is the inverse of ``r`` with its *own* embedding, and head prediction ``(?, r, t)`` is the tail
query ``(t, r + R, ?)`` — the protocol MoMoK and the trainer use (LibKGE's "reciprocal relations"). The
original TransE/RotatE/PairRE papers instead corrupt heads with the same relation embedding
(``‖h + r - t‖`` scored for every candidate h). With reciprocal relations a model learns two
independent embeddings per relation; this changes what is learned, not how a triple is scored.
Negative sampling likewise only corrupts the answer of each (already inverse-augmented) query.

**1-N scoring** over all E candidates never builds a ``[B, E, d]`` tensor in one piece:

* bilinear scores (DistMult, ComplEx) are one matrix product ``q @ T^T``;
* L2 distances use the exact expansion ``‖q - t‖² = ‖q‖² + ‖t‖² - 2 q·t`` (TransE and RotatE with
  p = 2; PairRE p = 2 with ``‖a - c∘t‖² = ‖a‖² + (c²)·(t²) - 2 (a∘c)·t``), clamped at 1e-12 before the
  square root so the gradient stays finite at a zero distance (a score difference ≤ 1e-6);
* everything else (L1 distances) goes through the PyKEEN interaction (or, for RotatE p = 1, the
  formula above) on chunks of candidates with at most ``chunk_elements`` entries of ``B × C × d``.

Sampled candidates in training (``B × (1 + k)`` rows) are scored in chunks of queries of at most
``candidate_chunk_elements`` entries, each recomputed in the backward pass
(:meth:`KGEModel.score_candidates`), so that RotatE's and PairRE's official sizes fit a small machine.

**Losses** (``loss:``), all on the scores above; the negatives come from the model's sampler
(``sampler:``, :mod:`momok.models.sampling`; by default uniform among all entities from the global torch
RNG, seeded and checkpointed by the trainer, so ``--resume`` stays exact):

* ``softmax_ce``: 1-N cross-entropy over all E candidates (LibKGE's 1vsAll; no negatives);
* ``nssa``: RotatE's negative-sampling loss with self-adversarial weights,
  ``-log σ(γ + s⁺) - Σ_i w_i log σ(-γ - s⁻_i)`` with ``w = softmax(α s⁻)`` (detached), averaged with equal
  weight on the positive and negative parts; ``α = 0`` gives uniform weights, and ``γ = 0, α = 0`` is
  ComplEx's logistic loss;
* ``margin``: TransE's margin ranking ``Σ_i w_i max(0, γ - s⁺ + s⁻_i)``, ``w`` uniform when
  ``adversarial_temperature = 0`` (TransE), else self-adversarial (OpenKE's ``MarginLoss(adv_temperature)``).

``regularization > 0`` adds ``λ · mean_batch(‖h‖_q^q + ‖r‖_q^q + ‖t‖_q^q)`` over the embeddings of the
batch's triples (``q = regularization_norm``; 2: ComplEx's L2, 3: N3).

Defaults are each paper's setting for FB15k/FB15k-237 (the MoMoK paper gives none for its baselines):

=========  ===========================================================================================
transe     Bordes et al. 2013, FB15k: d = 50, L1, γ = 1, margin ranking, unit-norm entities
distmult   Yang et al. 2015, FB15k: d = 100, margin ranking γ = 1, unit-norm entities (recalled; not re-checked)
complex    Trouillon et al. 2016, FB15k: d = 200 (complex), logistic loss, 10 negatives (λ: see ComplExOptions)
rotate     Sun et al. 2019, FB15k-237 (official run.sh): d = 1000, γ = 9, α = 1, 256 negatives, lr 5e-5
pairre     Chao et al. 2021, FB15k-237 (official run.sh): d = 1500, γ = 6, α = 1, 256 negatives, L1, lr 5e-5
=========  ===========================================================================================

(The learning rate and batch size live in the ``training:`` section.) No per-dataset settings of these
models on MKG-W/MKG-Y/DB15K are published with the MoMoK paper; the closest are those of the RotatE
backbone in the AdaMF-MAT scripts (MKG-Y: d = 200, γ = 4, α = 2, 128 negatives, batch 1024, lr 2e-5,
1000 epochs; MKG-W: γ = 12; DB15K: d = 250, γ = 12) and MMRNS's README example (TransE on DB15K:
d = 200, γ = 6, α = 0.5, 20 negatives, batch 400, lr 1e-4, 100k steps). Example config (MKG-Y, the
AdaMF-MAT backbone settings)::

    dataset: {path: data/raw/MKG-Y}
    model: {name: rotate, dim: 200, margin: 4.0, adversarial_temperature: 2.0, num_negatives: 128}
    training: {epochs: 1000, batch_size: 1024, lr: 2.0e-5}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from momok.bounds import NonNegativeFloat, PositiveInt
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.init import uniform
from momok.models.registry import BuildContext, register
from momok.models.sampling import SamplerOptions, build_sampler, check_sampler

LOSSES = ("softmax_ce", "nssa", "margin")
_L2_EPS = 1e-12


def pykeen_interaction(name: str, **kwargs) -> nn.Module:
    """An instance of ``pykeen.nn.modules.<name>``; PyKEEN is imported on first use (importing it takes
    seconds, and the registry imports this module whenever any model is looked up)."""
    import pykeen.nn.modules

    return getattr(pykeen.nn.modules, name)(**kwargs)


# ---------------------------------------------------------------------------------------------
# Options


@dataclass
class KGEOptions:
    """Options shared by every embedding baseline (each model's class overrides the defaults)."""

    dim: PositiveInt = 200
    """Embedding dimension (complex models: number of complex coordinates, so 2·dim real numbers)."""
    loss: Literal["softmax_ce", "nssa", "margin"] = "nssa"
    """Training loss: ``softmax_ce`` (1-N cross-entropy), ``nssa`` (self-adversarial negative sampling,
    RotatE), ``margin`` (margin ranking, TransE); see the module docstring."""
    num_negatives: PositiveInt = 256
    """Negatives per training query for ``nssa`` and ``margin``."""
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    """How ``nssa`` and ``margin`` draw negatives (:mod:`momok.models.sampling`; default uniform over all
    entities)."""
    margin: float = 9.0
    """γ of ``nssa`` (added to every score inside the sigmoid) and of ``margin``."""
    adversarial_temperature: NonNegativeFloat = 1.0
    """α of the self-adversarial weights ``softmax(α · s⁻)``; 0 = uniform weights."""
    regularization: NonNegativeFloat = 0.0
    """λ of the embedding penalty (0 = none)."""
    regularization_norm: PositiveInt = 2
    """q of the penalty ``‖x‖_q^q`` (2 = L2, 3 = N3)."""
    chunk_elements: PositiveInt = 1 << 25
    """Most entries of a ``B × C × d`` tensor built at once by chunked 1-N scoring (memory bound only;
    results do not depend on it)."""
    candidate_chunk_elements: PositiveInt | None = 1 << 27
    """Training with sampled negatives: most entries of the ``B × (1 + k) × width`` candidate rows scored
    at once (``width``: an entity row's entries, complex ones counted once). A larger batch is scored in
    chunks of queries, each recomputed in the backward pass (``torch.utils.checkpoint``) instead of
    keeping its intermediates: RotatE's official ``d = 1000`` with 256 negatives and batch 1024 needs
    about 2 GiB per such tensor and several of them. Memory bound only (same loss and gradients);
    null: never chunk."""
    modalities: tuple[str, ...] = ("structure",)
    """Uni-modal: always ``[structure]`` (no feature file is loaded)."""

    def __post_init__(self):
        if self.dim < 1:
            raise ValueError(f"dim must be at least 1, got {self.dim}")
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be at least 1, got {self.num_negatives}")
        if self.adversarial_temperature < 0:
            raise ValueError("adversarial_temperature must not be negative")
        if self.regularization < 0:
            raise ValueError("regularization must not be negative")
        if self.regularization_norm < 1:
            raise ValueError("regularization_norm must be at least 1")
        if self.chunk_elements < 1:
            raise ValueError("chunk_elements must be at least 1")
        if self.candidate_chunk_elements is not None and self.candidate_chunk_elements < 1:
            raise ValueError("candidate_chunk_elements must be at least 1 or null")
        if tuple(self.modalities) != ("structure",):
            raise ValueError(f"a uni-modal model uses modalities [structure] only, got {list(self.modalities)}")
        check_sampler(self.sampler, self.modalities)
        p = getattr(self, "p", None)  # the distance norm of the models that have one (TransE, RotatE, PairRE)
        if p is not None and p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")


@dataclass
class TransEOptions(KGEOptions):
    """TransE (Bordes et al. 2013); defaults: the paper's FB15k setting."""

    dim: PositiveInt = 50
    loss: Literal["softmax_ce", "nssa", "margin"] = "margin"
    num_negatives: PositiveInt = 1
    margin: float = 1.0
    adversarial_temperature: NonNegativeFloat = 0.0
    p: int = 1
    """Norm of the distance: 1 (paper's FB15k choice) or 2."""
    normalize_entities: bool = True
    """Use unit-L2-norm entity vectors (the paper renormalises them before each step; here the
    normalisation is part of the forward pass, which gives the same scores)."""


@dataclass
class DistMultOptions(KGEOptions):
    """DistMult (Yang et al. 2015); defaults: the paper's FB15k setting."""

    dim: PositiveInt = 100
    loss: Literal["softmax_ce", "nssa", "margin"] = "margin"
    num_negatives: PositiveInt = 1
    margin: float = 1.0
    adversarial_temperature: NonNegativeFloat = 0.0
    normalize_entities: bool = True
    """Use unit-L2-norm entity vectors (as TransE, which the paper's training follows)."""


@dataclass
class ComplExOptions(KGEOptions):
    """ComplEx (Trouillon et al. 2016); defaults: the paper's FB15k setting (logistic loss = nssa with
    γ = 0 and α = 0), except the L2 weight: the paper's λ = 0.01 multiplies a penalty next to a *summed*
    loss over the 1 + η samples of each triple; next to this module's averaged loss the same λ kept a
    toy-dataset model at random level (test MRR 0.016 after 30 epochs against 0.100 with λ = 0 after
    10, measured on a 300-entity toy), so the default is 0 and λ is left to the dataset config."""

    dim: PositiveInt = 200
    loss: Literal["softmax_ce", "nssa", "margin"] = "nssa"
    num_negatives: PositiveInt = 10
    margin: float = 0.0
    adversarial_temperature: NonNegativeFloat = 0.0
    regularization: NonNegativeFloat = 0.0
    regularization_norm: PositiveInt = 2


@dataclass
class RotatEOptions(KGEOptions):
    """RotatE (Sun et al. 2019); defaults: the official FB15k-237 run."""

    dim: PositiveInt = 1000
    loss: Literal["softmax_ce", "nssa", "margin"] = "nssa"
    num_negatives: PositiveInt = 256
    margin: float = 9.0
    adversarial_temperature: NonNegativeFloat = 1.0
    p: int = 1
    """1: sum over coordinates of the complex modulus ``|h_k r_k - t_k|`` (the official code); 2: the
    L2 norm of the complex vector (PyKEEN's ``RotatEInteraction``)."""


@dataclass
class PairREOptions(KGEOptions):
    """PairRE (Chao et al. 2021); defaults: the official FB15k-237 run."""

    dim: PositiveInt = 1500
    loss: Literal["softmax_ce", "nssa", "margin"] = "nssa"
    num_negatives: PositiveInt = 256
    margin: float = 6.0
    adversarial_temperature: NonNegativeFloat = 1.0
    p: int = 1
    """Norm of the distance (the paper: 1)."""


# ---------------------------------------------------------------------------------------------
# Scoring helpers


def _unsqueeze(rep, dim: int):
    """``rep`` (a tensor or a tuple of tensors) with a new axis at ``dim``."""
    if isinstance(rep, tuple):
        return tuple(x.unsqueeze(dim) for x in rep)
    return rep.unsqueeze(dim)


def _take(rep, index):
    if isinstance(rep, tuple):
        return tuple(x[index] for x in rep)
    return rep[index]


def chunked_scores(score_fn, heads, relations, table: torch.Tensor, chunk_elements: int) -> torch.Tensor:
    """``score_fn(h[B,1,...], r[B,1,...], t[1,C,...]) -> [B, C]`` over all rows of ``table``, in chunks
    of candidates such that at most ``chunk_elements`` entries of ``B × C × width`` exist at once."""
    batch = heads.shape[0]
    width = max(1, table[0].numel())
    step = max(1, chunk_elements // max(1, batch * width))
    h, r = heads.unsqueeze(1), _unsqueeze(relations, 1)
    return torch.cat([score_fn(h, r, table[start:start + step].unsqueeze(0))
                      for start in range(0, table.shape[0], step)], dim=1)


def l2_distance_all(queries: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``‖q_b - t_e‖_2`` for all pairs ``[B, E]`` by the exact expansion (no ``B × E × d`` tensor)."""
    squared = queries.square().sum(-1, keepdim=True) + table.square().sum(-1) - 2 * queries @ table.T
    return squared.clamp_min(_L2_EPS).sqrt()


def l1_distance_all(queries: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``‖q_b - t_e‖_1`` for all pairs ``[B, E]`` (``torch.cdist``: no ``B × E × d`` tensor)."""
    return torch.cdist(queries, table, p=1)


def grouped_by_rows(rows: torch.Tensor, score_group) -> torch.Tensor:
    """``[B, E]`` scores of queries grouped by equal rows of ``rows`` ``[B, k]`` (e.g. a relation's
    parameters): ``score_group(index, row)`` scores the queries ``index`` that share ``row``."""
    _, group = torch.unique(rows, dim=0, return_inverse=True)
    order = torch.argsort(group, stable=True)
    counts = torch.bincount(group).tolist()
    pieces, start = [], 0
    for count in counts:
        index = order[start:start + count]
        pieces.append(score_group(index, rows[index[0]]))
        start += count
    return torch.cat(pieces)[torch.argsort(order)]


def as_complex(x: torch.Tensor) -> torch.Tensor:
    """Real ``[..., 2d]`` (real parts, then imaginary parts) -> complex ``[..., d]``."""
    real, imag = x.chunk(2, dim=-1)
    return torch.complex(real, imag)


def rotate_l1(h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """RotatE's official score ``-Σ_k |h_k r_k - t_k|`` on broadcast complex tensors."""
    return -(h * r - t).abs().sum(-1)


# ---------------------------------------------------------------------------------------------
# Losses


def nssa_loss(positive: torch.Tensor, negative: torch.Tensor, margin: float, temperature: float) -> torch.Tensor:
    """RotatE's self-adversarial negative-sampling loss; positive ``[B]``, negative ``[B, k]`` scores."""
    weights = _negative_weights(negative, temperature)
    positive_part = -F.logsigmoid(margin + positive)
    negative_part = -(weights * F.logsigmoid(-margin - negative)).sum(-1)
    return ((positive_part + negative_part) / 2).mean()


def margin_loss(positive: torch.Tensor, negative: torch.Tensor, margin: float, temperature: float) -> torch.Tensor:
    """Margin ranking ``Σ_i w_i max(0, γ - s⁺ + s⁻_i)`` averaged over the batch."""
    weights = _negative_weights(negative, temperature)
    return (weights * F.relu(margin - positive.unsqueeze(1) + negative)).sum(-1).mean()


def ranking_loss(loss: str, scores: torch.Tensor, margin: float, temperature: float) -> torch.Tensor:
    """The ``nssa`` or ``margin`` loss of candidate scores ``[B, 1 + k]``, the positive in column 0."""
    fn = nssa_loss if loss == "nssa" else margin_loss
    return fn(scores[:, 0], scores[:, 1:], margin, temperature)


def _negative_weights(negative: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:
        return torch.full_like(negative, 1.0 / negative.shape[-1])
    return torch.softmax(temperature * negative, dim=-1).detach()


# ---------------------------------------------------------------------------------------------
# The shared model


class KGEModel(LinkPredictor):
    """An embedding model: entity and relation rows, a PyKEEN interaction, 1-N scoring and the losses.

    Subclasses set ``self.interaction`` and implement :meth:`entity_rows`, :meth:`relation_rows`
    (representations in the form the interaction takes); :meth:`score_all_rows` may be overridden
    with an exact memory-bounded form (the default chunks the interaction over candidates).
    """

    def __init__(self, options: KGEOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        self.num_relations = context.num_relations
        self.interaction: nn.Module | None = None
        self.sampler = build_sampler(options.sampler, context.num_entities, context.features,
                                     num_relations=context.num_relations, structure_width=self.structure_width(),
                                     generator=context.generator)

    # -- representations (subclasses)
    def entity_rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        """Entity representations of ``ids`` (``None``: all entities), ``[..., width]``."""
        raise NotImplementedError

    def relation_rows(self, ids: torch.Tensor):
        """Relation representations of ``ids`` (tensor or tuple of tensors)."""
        raise NotImplementedError

    def penalty_rows(self, heads, relations, tails) -> list[torch.Tensor]:
        """The raw parameters that ``regularization`` penalises for a batch of triples."""
        return []

    def structure_width(self) -> int:
        """Width of :meth:`structure_rows` (known from the options, before the embeddings exist: the
        sampler is built first)."""
        return self.options.dim

    def structure_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """The real structure embedding rows ``[..., structure_width]`` of ``ids`` (what MMRNS's structural
        channel reads)."""
        return self.entity[ids]

    def entity_rows_with_image(self, ids: torch.Tensor, image_ids: torch.Tensor) -> torch.Tensor:
        """Representations of entities ``ids`` whose image part is that of ``image_ids`` (same shape)."""
        raise NotImplementedError(f"{type(self).__name__} has no image part")

    def prefers_cross_modal(self, heads: torch.Tensor, relations: torch.Tensor,
                            candidates: torch.Tensor) -> torch.Tensor:
        """MANS-A: ``BoolTensor[B, n]``, whether each candidate tail's cross-modal energy is the lower one."""
        raise NotImplementedError(f"{type(self).__name__} has no structure/multimodal energies")

    # -- scores
    def interact(self, h, r, t) -> torch.Tensor:
        """Broadcast scores of representations (the PyKEEN interaction by default)."""
        return self.interaction(h, r, t)

    def score_all_rows(self, h, r, table: torch.Tensor) -> torch.Tensor:
        """``[B, E]`` scores of queries ``(h, r)`` against every row of ``table`` (memory-bounded)."""
        return chunked_scores(self.interact, h, r, table, self.options.chunk_elements)

    def score_all(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        return self.score_all_rows(self.entity_rows(heads), self.relation_rows(relations), self.entity_rows(None))

    def score_candidate_rows(self, heads: torch.Tensor, relations: torch.Tensor, rows) -> torch.Tensor:
        """Scores ``[B, C]`` of candidate tail representations ``rows`` (``entity_rows`` of ``[B, C]`` ids)."""
        h = _unsqueeze(self.entity_rows(heads), 1)
        r = _unsqueeze(self.relation_rows(relations), 1)
        return self.interact(h, r, rows)

    def score_candidates(self, heads: torch.Tensor, relations: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, C]`` of candidate ids ``[B, C]``; with autograd on and more than
        ``candidate_chunk_elements`` entries of ``B × C × width`` (:class:`KGEOptions`), chunks of queries,
        each gathering and scoring its rows again in the backward pass (``torch.utils.checkpoint``, random
        state replayed), so that only one chunk's ``[b, C, width]`` intermediates exist at a time."""
        limit = self.options.candidate_chunk_elements if isinstance(self.options, KGEOptions) else None

        def score(h, r, c):
            return self.score_candidate_rows(h, r, self.entity_rows(c))

        if limit is None or not torch.is_grad_enabled():
            return score(heads, relations, candidates)
        width = self.entity_rows(candidates[:1, :1]).numel()
        step = max(1, limit // max(1, candidates.shape[1] * width))
        if step >= heads.shape[0]:
            return score(heads, relations, candidates)
        return torch.cat([checkpoint(score, heads[i:i + step], relations[i:i + step], candidates[i:i + step],
                                     use_reentrant=False)
                          for i in range(0, heads.shape[0], step)])

    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"score": self.score_all(heads, relations)}

    # -- training
    def needs_labels(self) -> bool:
        return self.options.loss != "softmax_ce" and self.sampler.needs_labels

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        lr = self.options.sampler.lr
        params = [p for p in self.sampler.parameters() if p.requires_grad]
        return [(params, lr)] if lr is not None and params else []

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        sampler_loss = None
        if o.loss == "softmax_ce":
            main = F.cross_entropy(self.score_all(batch.heads, batch.relations), batch.tails)
        else:
            negatives = self.sampler.sample(batch.heads, batch.relations, batch.tails, o.num_negatives, model=self,
                                            labels=batch.labels)
            candidates = torch.cat([batch.tails.unsqueeze(1), negatives.entities], dim=1)
            if negatives.mixing is not None:  # straight-through one-hot mixtures of the pool's rows (MMRNS)
                pool_rows = self.entity_rows(negatives.pool)
                mixed = negatives.mixing.to(pool_rows.dtype) @ pool_rows
                rows = torch.cat([self.entity_rows(batch.tails).unsqueeze(1), mixed], dim=1)
            elif negatives.image_only is None:
                rows = None  # gathered per chunk of queries by score_candidates
            else:  # image-only negatives: the answer's rows with the image part of the drawn entity
                keep = torch.where(negatives.image_only, batch.tails.unsqueeze(1), negatives.entities)
                rows = self.entity_rows_with_image(torch.cat([batch.tails.unsqueeze(1), keep], dim=1), candidates)
            if rows is None:
                scores = self.score_candidates(batch.heads, batch.relations, candidates)
            else:
                scores = self.score_candidate_rows(batch.heads, batch.relations, rows)
            main = ranking_loss(o.loss, scores, o.margin, o.adversarial_temperature)
            if negatives.loss is not None:
                sampler_loss = negatives.loss(_negative_weights(scores[:, 1:].detach(), o.adversarial_temperature))
        parts = {o.loss: float(main.detach())}
        total = main
        if sampler_loss is not None:
            total = total + sampler_loss
            parts["sampler"] = float(sampler_loss.detach())
        return self.add_penalty(total, parts, batch), parts

    def add_penalty(self, total: torch.Tensor, parts: dict[str, float], batch: TrainBatch) -> torch.Tensor:
        """``total + λ · Σ_x mean_batch ‖x‖_q^q`` over the batch's :meth:`penalty_rows` when ``regularization``
        λ > 0 (the penalty recorded in ``parts``), else ``total``."""
        o = self.options
        if o.regularization > 0:
            penalty = sum(x.abs().pow(o.regularization_norm).sum(-1).mean()
                          for x in self.penalty_rows(batch.heads, batch.relations, batch.tails))
            total = total + o.regularization * penalty
            parts["regularization"] = float(penalty.detach())
        return total


def _xavier(shape, generator) -> nn.Parameter:
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return nn.Parameter(uniform(shape, bound, generator))


class TransE(KGEModel):
    """``-‖h + r - t‖_p`` (PyKEEN ``TransEInteraction``); init uniform ±6/√d as the paper."""

    def __init__(self, options: TransEOptions, context: BuildContext):
        super().__init__(options, context)
        bound = 6 / math.sqrt(options.dim)
        self.entity = nn.Parameter(uniform((context.num_entities, options.dim), bound, context.generator))
        relation = uniform((2 * context.num_relations, options.dim), bound, context.generator)
        self.relation = nn.Parameter(F.normalize(relation, dim=-1))  # the paper normalises r once
        self.interaction = pykeen_interaction("TransEInteraction", p=options.p)

    def entity_rows(self, ids):
        e = self.entity if ids is None else self.entity[ids]
        return F.normalize(e, dim=-1) if self.options.normalize_entities else e

    def relation_rows(self, ids):
        return self.relation[ids]

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def score_all_rows(self, h, r, table):
        if self.options.p == 2:
            return -l2_distance_all(h + r, table)
        if self.options.p == 1:
            return -l1_distance_all(h + r, table)
        return super().score_all_rows(h, r, table)


class DistMult(KGEModel):
    """``<h, r, t>`` (PyKEEN ``DistMultInteraction``); 1-N as ``(h∘r) @ T^T``."""

    def __init__(self, options: DistMultOptions, context: BuildContext):
        super().__init__(options, context)
        self.entity = _xavier((context.num_entities, options.dim), context.generator)
        self.relation = _xavier((2 * context.num_relations, options.dim), context.generator)
        self.interaction = pykeen_interaction("DistMultInteraction")

    def entity_rows(self, ids):
        e = self.entity if ids is None else self.entity[ids]
        return F.normalize(e, dim=-1) if self.options.normalize_entities else e

    def relation_rows(self, ids):
        return self.relation[ids]

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def score_all_rows(self, h, r, table):
        return (h * r) @ table.T


class ComplEx(KGEModel):
    """``Re(<h, r, conj t>)`` (PyKEEN ``ComplExInteraction``); 1-N as two real matrix products."""

    def structure_width(self):
        return 2 * self.options.dim

    def __init__(self, options: ComplExOptions, context: BuildContext):
        super().__init__(options, context)
        self.entity = _xavier((context.num_entities, 2 * options.dim), context.generator)
        self.relation = _xavier((2 * context.num_relations, 2 * options.dim), context.generator)
        self.interaction = pykeen_interaction("ComplExInteraction")

    def entity_rows(self, ids):
        return as_complex(self.entity if ids is None else self.entity[ids])

    def relation_rows(self, ids):
        return as_complex(self.relation[ids])

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def score_all_rows(self, h, r, table):
        q = h * r
        return q.real @ table.real.T + q.imag @ table.imag.T


class CachedEntityRows:
    """``entity_rows`` for a :class:`KGEModel` that computes entity rows in ``_rows(ids)`` (``ids`` ``None``:
    every entity) and holds a :class:`~momok.models.cache.ParameterCache` as ``_cache``: the table of every
    entity is kept across evaluation batches while the parameters stay unchanged."""

    def entity_rows(self, ids):
        if ids is None:
            return self._cache.get(self, "entities", lambda: self._rows(None))
        return self._rows(ids)


class RotationScoring:
    """RotatE's scoring hooks for a :class:`KGEModel` with a ``phase`` table, an ``entity`` table and
    ``options.p`` (shared by RotatE and AdaMF, whose score function is RotatE's)."""

    def structure_width(self):
        return 2 * self.options.dim

    def relation_rows(self, ids):
        phase = self.phase[ids]
        return torch.complex(torch.cos(phase), torch.sin(phase))

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.entity[tails]]

    def interact(self, h, r, t):
        return rotate_l1(h, r, t) if self.options.p == 1 else self.interaction(h, r, t)

    def score_all_rows(self, h, r, table):
        if self.options.p == 2:
            q = h * r
            return -l2_distance_all(torch.cat([q.real, q.imag], -1), torch.cat([table.real, table.imag], -1))
        return super().score_all_rows(h, r, table)


class RotatE(RotationScoring, KGEModel):
    """``h∘r`` rotates h by unit-modulus ``r = exp(iθ)``; init as the official code (entities uniform
    ±(γ+2)/d, phases uniform in ±π)."""

    def __init__(self, options: RotatEOptions, context: BuildContext):
        super().__init__(options, context)
        bound = (options.margin + 2.0) / options.dim
        self.entity = nn.Parameter(uniform((context.num_entities, 2 * options.dim), bound, context.generator))
        self.phase = nn.Parameter(uniform((2 * context.num_relations, options.dim), math.pi, context.generator))
        self.interaction = pykeen_interaction("RotatEInteraction")

    def entity_rows(self, ids):
        return as_complex(self.entity if ids is None else self.entity[ids])



class PairRE(KGEModel):
    """``-‖h∘r_h - t∘r_t‖_p`` on unit-norm entities (PyKEEN ``PairREInteraction``); init as the
    official code (uniform ±(γ+2)/d)."""

    def __init__(self, options: PairREOptions, context: BuildContext):
        super().__init__(options, context)
        bound = (options.margin + 2.0) / options.dim
        self.entity = nn.Parameter(uniform((context.num_entities, options.dim), bound, context.generator))
        self.relation = nn.Parameter(uniform((2 * context.num_relations, 2 * options.dim), bound, context.generator))
        self.interaction = pykeen_interaction("PairREInteraction", p=options.p)

    def entity_rows(self, ids):
        return F.normalize(self.entity if ids is None else self.entity[ids], dim=-1)

    def relation_rows(self, ids):
        r_head, r_tail = self.relation[ids].chunk(2, dim=-1)
        return r_head, r_tail

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def score_all_rows(self, h, r, table):
        if self.options.p == 2:
            r_head, r_tail = r
            a = h * r_head
            squared = (a.square().sum(-1, keepdim=True) + r_tail.square() @ table.square().T
                       - 2 * (a * r_tail) @ table.T)
            return -squared.clamp_min(_L2_EPS).sqrt()
        if self.options.p == 1:
            # t∘r_t depends on the query's relation: one L1 distance matrix per distinct r_t in the batch
            r_head, r_tail = r
            a = h * r_head
            return grouped_by_rows(r_tail, lambda index, scale: -l1_distance_all(a[index], table * scale))
        return super().score_all_rows(h, r, table)


# ---------------------------------------------------------------------------------------------
# Registration


@register("transe", TransEOptions)
def build_transe(options: TransEOptions, context: BuildContext) -> TransE:
    return TransE(options, context)


@register("distmult", DistMultOptions)
def build_distmult(options: DistMultOptions, context: BuildContext) -> DistMult:
    return DistMult(options, context)


@register("complex", ComplExOptions)
def build_complex(options: ComplExOptions, context: BuildContext) -> ComplEx:
    return ComplEx(options, context)


@register("rotate", RotatEOptions)
def build_rotate(options: RotatEOptions, context: BuildContext) -> RotatE:
    return RotatE(options, context)


@register("pairre", PairREOptions)
def build_pairre(options: PairREOptions, context: BuildContext) -> PairRE:
    return PairRE(options, context)
