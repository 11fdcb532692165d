"""MoSE (Zhao et al. 2022, "MoSE: Modality Split and Ensemble for Multimodal Knowledge Graph Completion",
EMNLP, §3 "Methodology": modality-split representation learning, then ensemble inference): one ComplEx
scorer per modality with modality-split relation embeddings, ensembled at inference. The full text of the
paper was not available here; the formulas below are the official code's (OreOZhao/MoSE4MKGC, read for
facts only), so subsection and equation numbers are not cited.

**Modality split.** Each modality ``m`` (structure, image, text) has its own relation
embeddings ``r_m ∈ C^d`` and entity embeddings; the structural ones ``e_s ∈ C^d`` are shared::

    e_m = ((1 - α) e_s + α P_m x_m) / τ          m = image, text  (α = 1, τ = 20: official defaults)
    s_m(h, r, t) = Re(<h_m, r_m, conj(t_m)>)      ComplEx (official ``ComplExMDR``)

with ``P_m`` the projection of the modality's feature row (a learned placeholder where the entity lacks
the modality, :mod:`momok.models.baselines.multimodal`). Every modality is trained on its own 1-N
cross-entropy with an N3 penalty on its factors (Lacroix et al. 2018, as the official code, which builds
on facebookresearch/kbc); the losses of the modalities are summed, so the modalities share only ``e_s``::

    L = Σ_m [ CE(s_m(h, r, ·), t) + λ/B Σ_{f ∈ {|h_m|, |r_m|, |t_m|}} Σ_k |f_k|³ ]     (|x|_k = complex modulus)

**Ensemble inference, fit on the VALIDATION split only.** ``scores()`` returns every
modality's score (keys ``structure``, ``image``, ``text``), ``average`` and the learned ensemble that
``ensemble`` names (``boosting`` or ``meta``):

* ``average`` (MoSE-AI): ``Σ_m s_m / M``;
* ``boosting`` (MoSE-BI, official ``weight_learning.py``): relation-specific weights ``w_{m,r}``,
  ``Σ_m w_{m,r} s_m``, learned per relation (inverse relations have their own) by AdaBoost over the
  relation's validation queries: every (query, candidate) cell starts with weight ``D = 1/E``; a
  modality is *right* on a cell when it ranks the candidate below the answer (known true answers, the
  answer included, count as right); M rounds each pick the not-yet-picked modality with the largest
  ``w = ½ ln(Σ_right D / Σ_wrong D)`` (+1e-10 on both sums), give it that weight and reweight
  ``D ← D · exp(-w · (±1))`` (normalised). A relation with fewer than ``boosting_min_queries``
  validation queries gets ``1/M`` (the official code: 10);
* ``meta`` (MoSE-MI, official ``meta_learner.py``): ``W2 ReLU(W1 x + b1) + b2`` of each candidate's
  modality scores ``x ∈ R^M`` (hidden width 32), trained afresh (fixed seed) at each fit with 1-N
  cross-entropy over the unfiltered scores of the validation queries: Adagrad lr 0.1, 20 epochs,
  batches of 256 queries.

``score`` (the ranking key) is the ensemble named by ``ensemble``. The boosting weights and the
meta-learner are fit by ``fit_on_validation`` (the trainer calls it before each validation, with a
train + valid filter: test is never seen); they are part of the model's state (the meta-learner's
parameters are frozen for the trainer's optimiser), so each checkpoint carries those of its epoch.
``modalities: [structure]`` is the structure-only variant: ComplEx with N3 (the structural scorer
alone); ``score`` is then ``structure``.

Departures, all documented: the trainer's Adam instead of the official Adagrad (lr 0.1); the
projection ``P_m`` has a bias and PyTorch's linear init (official: Xavier, no bias); missing features
get a learned placeholder (official: a random normal feature vector); the official meta-learner
keeps the epoch with the best *test* Hits@10, here it runs its 20 epochs and never sees test, and its
output ReLU is left out (the official MLP ends in one: on the toy it started dead, every candidate
scored 0, test MRR 0.0067 against 0.214 without it); in boosting, the official code could pick a
modality twice when its first weight was ≤ 0; here each is picked exactly once.

Defaults: the official code's (OreOZhao/MoSE4MKGC ``src/learn.py``, read for facts only): rank 2000,
N3 λ = 0.01, init scale 1e-3, τ (``--scale``) 20, α 1, batch 1000, 200 epochs with validation every 3
and early stopping after 10 epochs without a better Hits@10. No settings for MKG-W, MKG-Y, DB15K or
KVC16K are published (the paper used FB15K-237, WN18, WN9). Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: mose, dim: 2000, ensemble: boosting}
    training: {epochs: 200, batch_size: 1000, lr: 0.001}
    evaluation: {every: 3, patience: 4}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from momok.modalities import MODALITIES
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.baselines.multimodal import ModalityInputs, check_modalities
from momok.models.cache import ParameterCache
from momok.models.registry import BuildContext, register

ENSEMBLES = ("average", "boosting", "meta")
_EPS = 1e-10


@dataclass
class MoSEOptions:
    """``model:`` options of ``mose``."""

    dim: int = 2000
    """Complex rank d of every modality's entity and relation embeddings (official ``--rank`` 2000)."""
    modalities: tuple[str, ...] = MODALITIES
    """Modality-split scorers: ``structure`` (required) plus image and/or text feature files;
    ``[structure]`` alone is the structure-only baseline (ComplEx + N3)."""
    alpha: float = 1.0
    """α of ``e_m = ((1-α) e_s + α P_m x_m) / τ``; 1 (official default): modality entities from features only."""
    scale: float = 20.0
    """τ dividing the image/text entity embeddings (official ``--scale`` default 20)."""
    init_scale: float = 1e-3
    """Structure entities and all relations start as N(0, 1) times this (official ``--init``)."""
    regularization: float = 0.01
    """λ of the N3 penalty of each modality (official ``--reg`` 0.01)."""
    ensemble: Literal["average", "boosting", "meta"] = "boosting"
    """Which ensemble is ``score`` (ranks, selects epochs): ``average`` (MoSE-AI), ``boosting`` (MoSE-BI)
    or ``meta`` (MoSE-MI); only the chosen learned ensemble is fit (and returned) besides ``average``."""
    boosting_min_queries: int = 10
    """Relations with fewer validation queries than this get equal weights (official: 10)."""
    meta_hidden: int = 32
    """Hidden width of MoSE-MI's meta-learner (official ``hs`` 32)."""
    meta_epochs: int = 20
    """Passes of the meta-learner over the validation queries at each fit (official ``max_epochs`` 20)."""
    meta_lr: float = 0.1
    """Adagrad learning rate of the meta-learner (official 0.1)."""
    meta_batch_size: int = 256
    """Validation queries per meta-learner step (official 256)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen, as the official code's fixed vectors."""

    def __post_init__(self):
        check_modalities(self.modalities, require_file=False)
        if min(self.dim, self.boosting_min_queries, self.meta_hidden, self.meta_epochs, self.meta_batch_size) < 1:
            raise ValueError("dim, boosting_min_queries and the meta_* sizes must be at least 1")
        if self.meta_lr <= 0:
            raise ValueError("meta_lr must be positive")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.scale <= 0 or self.init_scale <= 0:
            raise ValueError("scale and init_scale must be positive")
        if self.regularization < 0:
            raise ValueError("regularization must not be negative")
        if self.ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {list(ENSEMBLES)}, got {self.ensemble!r}")


def complex_query(h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``h ∘ r`` of real ``[..., 2d]`` rows (real parts, then imaginary parts), in the same layout."""
    h_re, h_im = h.chunk(2, dim=-1)
    r_re, r_im = r.chunk(2, dim=-1)
    return torch.cat([h_re * r_re - h_im * r_im, h_re * r_im + h_im * r_re], dim=-1)


def moduli(x: torch.Tensor) -> torch.Tensor:
    """Complex moduli ``[..., d]`` of real ``[..., 2d]`` rows."""
    re, im = x.chunk(2, dim=-1)
    return torch.sqrt(re.square() + im.square())


def boosting_weights(scores: torch.Tensor, targets: torch.Tensor, known: torch.Tensor,
                     min_queries: int = 10) -> torch.Tensor:
    """MoSE-BI's weights ``[M]`` of one relation (module docstring).

    scores: ``[M, T, E]`` every modality's scores of the relation's T validation queries; targets:
    ``LongTensor[T]`` their answers; known: ``BoolTensor[T, E]`` known true answers (filter).
    """
    M, T, E = scores.shape
    if T < min_queries:
        return torch.full((M,), 1.0 / M, dtype=scores.dtype, device=scores.device)
    target = scores.gather(2, targets.view(1, T, 1).expand(M, T, 1))
    right = (scores < target) | known.unsqueeze(0)
    right[:, torch.arange(T, device=scores.device), targets] = True
    sign = right.to(scores.dtype) * 2 - 1
    D = torch.full((T, E), 1.0 / E, dtype=scores.dtype, device=scores.device)
    weights = torch.zeros(M, dtype=scores.dtype, device=scores.device)
    picked = torch.zeros(M, dtype=torch.bool, device=scores.device)
    for _ in range(M):
        right_mass = (D * right).sum((1, 2)) + _EPS
        wrong_mass = (D * ~right).sum((1, 2)) + _EPS
        w = 0.5 * torch.log(right_mass / wrong_mass)
        best = int(torch.argmax(w.masked_fill(picked, -torch.inf)))
        weights[best], picked[best] = w[best], True
        D = D * torch.exp(-w[best] * sign[best])
        D = D / D.sum()
    return weights


class MetaLearner(nn.Module):
    """MoSE-MI's ``W2 ReLU(W1 x + b1) + b2`` over a candidate's modality scores ``x ∈ R^M``."""

    def __init__(self, modalities: int, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(modalities, hidden)
        self.out = nn.Linear(hidden, 1)
        self.requires_grad_(False)  # fit on validation only, never by the trainer's optimiser

    def reset(self, generator: torch.Generator) -> None:
        """PyTorch's default linear init (uniform ±1/√in) from ``generator``."""
        for layer in (self.hidden, self.out):
            bound = 1.0 / math.sqrt(layer.in_features)
            for p in (layer.weight, layer.bias):
                p.copy_((torch.rand(p.shape, generator=generator) * 2 - 1) * bound)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """``[..., M]`` -> ``[...]``."""
        return self.out(torch.relu(self.hidden(scores))).squeeze(-1)


class MoSE(LinkPredictor):
    """Modality-split ComplEx scorers and their ensembles (module docstring)."""

    ranking_key = "score"

    def __init__(self, options: MoSEOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        self.num_relations = context.num_relations
        g = context.generator
        width = 2 * options.dim
        self.modalities = [m for m in MODALITIES if m in options.modalities]
        self.file_modalities = self.modalities[1:]
        self.entity = nn.Parameter(torch.randn((context.num_entities, width), generator=g) * options.init_scale)
        self.relation = nn.ParameterDict({
            m: nn.Parameter(torch.randn((2 * context.num_relations, width), generator=g) * options.init_scale)
            for m in self.modalities})
        self.inputs = ModalityInputs(self.file_modalities, {m: width for m in self.file_modalities},
                                     context.features, context.num_entities,
                                     train_features=options.train_features, generator=g)
        M = len(self.modalities)
        self.register_buffer("ensemble_weights", torch.full((M, 2 * context.num_relations), 1.0 / M))
        if options.ensemble == "meta":
            self.meta = MetaLearner(M, options.meta_hidden)
            with torch.no_grad():
                self.meta.reset(torch.Generator().manual_seed(0))
        self._tables = ParameterCache()

    # -- representations
    def _entity_tables(self) -> dict[str, torch.Tensor]:
        o = self.options
        tables = {"structure": self.entity}
        for m in self.file_modalities:
            tables[m] = ((1 - o.alpha) * self.entity + o.alpha * self.inputs(m, None)) / o.scale
        return tables

    def entity_tables(self) -> dict[str, torch.Tensor]:
        """Every modality's entity embeddings ``[E, 2d]`` (cached while gradients are off)."""
        return self._tables.get(self, "entity_tables", self._entity_tables)

    def modality_scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        """``s_m`` ``[B, E]`` of every modality."""
        out = {}
        for m, table in self.entity_tables().items():
            out[m] = complex_query(table[heads], self.relation[m][relations]) @ table.T
        return out

    # -- LinkPredictor
    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.modality_scores(heads, relations)
        if len(self.modalities) == 1:
            out["score"] = out["structure"]
            return out
        stacked = torch.stack([out[m] for m in self.modalities])
        out["average"] = stacked.mean(0)
        if self.options.ensemble == "boosting":
            weights = self.ensemble_weights[:, relations].to(stacked.dtype)
            out["boosting"] = (weights.unsqueeze(-1) * stacked).sum(0)
        elif self.options.ensemble == "meta":
            out["meta"] = self.meta(stacked.permute(1, 2, 0))
        out["score"] = out[self.options.ensemble]
        return out

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        total, parts = 0.0, {}
        for m, table in self.entity_tables().items():
            h, r, t = table[batch.heads], self.relation[m][batch.relations], table[batch.tails]
            fit = F.cross_entropy(complex_query(h, r) @ table.T, batch.tails)
            n3 = sum(moduli(x).abs().pow(3).sum() for x in (h, r, t)) / batch.heads.shape[0]
            total = total + fit + o.regularization * n3
            parts[f"ce_{m}"] = float(fit.detach())
            parts[f"n3_{m}"] = float(n3.detach())
        return total, parts

    def _stacked_scores(self, queries: torch.Tensor) -> torch.Tensor:
        """``[M, Q, E]`` modality scores of ``queries`` ``[Q, 3]``, 512 queries at a time."""
        parts = [self.modality_scores(queries[i:i + 512, 0], queries[i:i + 512, 1])
                 for i in range(0, len(queries), 512)]
        return torch.stack([torch.cat([p[m] for p in parts]) for m in self.modalities]).float()

    def fit_on_validation(self, triples: torch.Tensor, known) -> dict[str, float]:
        """The chosen learned ensemble from the validation queries (inverse queries included)."""
        if len(self.modalities) == 1 or self.options.ensemble == "average":
            return {}
        from momok.data.datasets import add_inverses

        queries = add_inverses(triples.cpu(), self.num_relations).to(self.ensemble_weights.device)
        if self.options.ensemble == "meta":
            return self._fit_meta(queries)
        return self._fit_boosting(queries, known)

    def _fit_meta(self, queries: torch.Tensor) -> dict[str, float]:
        """MoSE-MI: a fresh meta-learner (fixed seed) trained with 1-N cross-entropy on the unfiltered
        modality scores of the validation queries (Adagrad, as the official ``meta_learner.py``)."""
        o = self.options
        inputs = self._stacked_scores(queries).permute(1, 2, 0)  # [Q, E, M]
        generator = torch.Generator().manual_seed(0)
        self.meta.reset(generator)
        params = list(self.meta.parameters())
        losses = []
        with torch.enable_grad():
            for p in params:
                p.requires_grad_(True)
            optimiser = torch.optim.Adagrad(params, lr=o.meta_lr)
            for _ in range(o.meta_epochs):
                losses = []
                order = torch.randperm(len(queries), generator=generator).to(inputs.device)
                for start in range(0, len(order), o.meta_batch_size):
                    rows = order[start:start + o.meta_batch_size]
                    loss = F.cross_entropy(self.meta(inputs[rows]), queries[rows, 2])
                    optimiser.zero_grad()
                    loss.backward()
                    optimiser.step()
                    losses.append(float(loss.detach()))
            for p in params:
                p.requires_grad_(False)
                p.grad = None
        return {"meta_loss": sum(losses) / len(losses)}

    def _fit_boosting(self, queries: torch.Tensor, known) -> dict[str, float]:
        """MoSE-BI's per-relation weights."""
        device = self.ensemble_weights.device
        M = len(self.modalities)
        weights = torch.full_like(self.ensemble_weights, 1.0 / M)
        for r in torch.unique(queries[:, 1]).tolist():
            rows = queries[queries[:, 1] == r]
            if len(rows) < self.options.boosting_min_queries:
                continue
            stacked = self._stacked_scores(rows)
            mask = known.known_mask(rows[:, 0], rows[:, 1]).to(device)
            weights[:, r] = boosting_weights(stacked, rows[:, 2], mask, self.options.boosting_min_queries)
        self.ensemble_weights.copy_(weights)
        return {f"weight_{m}": float(weights[i].mean()) for i, m in enumerate(self.modalities)}


@register("mose", MoSEOptions)
def build_mose(options: MoSEOptions, context: BuildContext) -> MoSE:
    return MoSE(options, context)
