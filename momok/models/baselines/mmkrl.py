"""MMKRL (Lu et al. 2022, "MMKRL: A robust embedding approach for multi-modal knowledge graph
representation learning", Applied Intelligence): knowledge reconstruction with TransE energies across a
structural and a multi-modal space, knowledge alignment, and adversarial training.

The full text of the paper was not available here. The reconstruction and alignment formulas are those
of the reimplementation by the MoMoK authors' group, whose Table 2 numbers this row reproduces
(zjukg/NATIVE ``mmkgc/module/model/MMKRL.py`` and ``strategy/MMKRLNegativeSampling.py``, read for facts
only); the adversarial training follows the paper's abstract (adversarial perturbations of the
multi-modal embeddings), in the form written below. Section and equation numbers are not cited.

**Representations.** Each entity has a structure embedding ``e ∈ R^d`` and a multi-modal embedding
``m = Σ_k P_k x_k`` over its feature modalities (image, text; a learned placeholder where the entity
lacks one, :mod:`momok.models.baselines.multimodal`) — for entities with every modality this is the
reimplementation's single projection ``P [x_img ; x_txt]``. Relations have ``r ∈ R^d``. The knowledge
reconstruction maps structure into a shared space with one matrix ``W_s`` and three biases::

    ĥ = W_s h + b_h,   t̂ = W_s t + b_t,   r̂ = W_s r + b_r

**Score** (``d(a, b) = ‖n(a) + n(r̂) - n(b)‖_p`` with ``n(x) = x / ‖x‖_2``), the mean of four TransE
energies, negated::

    s(h, r, t) = -( d(ĥ, t̂) + d(m_h, m_t) + d(m_h, t) + d(h, m_t) ) / 4

**Knowledge alignment** (mean squared errors, ``W_sm`` a second matrix)::

    L_ka = mse(h, ĥ) + mse(t, t̂) + mse(r, r̂) + mse(W_sm h, m_h) + mse(W_sm t, m_t)

**Adversarial training** (``adversarial_epsilon`` ε > 0): with ``L`` the ranking loss of the batch, the
multi-modal rows of the batch's heads and candidates are perturbed along their gradient,
``m + ε g / ‖g‖_2`` (``g = ∂L/∂m`` per row, detached: the fast-gradient method), and the ranking loss of
the perturbed rows is added. Total: ``L + L_adv + λ_ka L_ka``.

The ranking loss is the shared margin loss with self-adversarial weights over uniform negatives (or
``nssa``; :mod:`momok.models.baselines.kge`). ``modalities: [structure]`` is the structure-only variant:
the reconstructed TransE term ``d(ĥ, t̂)`` alone, with the structural alignment terms and no
adversarial step.

Departures, all documented: inverse relations ``r + R`` with their own embeddings and tail-only
corruption (as every model here); the raw feature rows are frozen by default (the reimplementation
fine-tunes them: ``train_features: true``); the adversarial form (FGM on the multi-modal rows, ε) is
this module's reading of the abstract, not checked against the paper's equations.

Defaults: ``dim`` 100, L1 distances, normalisation on (the reimplementation's argument defaults);
margin loss with γ = 6, α = 2 and 128 negatives as TBKGC in the same zjukg code (MMKRL's run settings
are not in the files read); ``λ_ka`` 1 (the reimplementation adds ``L_ka`` unweighted); ε = 0.1
(not published in what was read; assumed). Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: mmkrl, dim: 100}
    training: {epochs: 1000, batch_size: 1024, lr: 0.001}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from momok.bounds import NonNegativeFloat, PositiveInt
from momok.modalities import MODALITIES
from momok.models.base import TrainBatch
from momok.models.baselines.kge import CachedEntityRows, KGEModel, ranking_loss
from momok.models.baselines.multimodal import ModalityInputs, check_modalities
from momok.models.baselines.options import MarginLossOptions, TransEDistanceOptions
from momok.models.cache import ParameterCache
from momok.models.init import uniform
from momok.models.registry import BuildContext, register


@dataclass
class MMKRLOptions(TransEDistanceOptions, MarginLossOptions):
    """``model:`` options of ``mmkrl``; the loss options and their defaults (the zjukg MMKGC code's for
    TBKGC) are those of :mod:`momok.models.baselines.options`. MMKRL draws ``uniform`` negatives (the only
    ``sampler`` accepted)."""

    dim: PositiveInt = 100
    """Dimension d of structure, multi-modal and relation embeddings (reimplementation default 100)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` (required) plus image and/or text feature files; ``[structure]`` alone is the
    structure-only variant (the reconstructed TransE term)."""
    alignment_weight: NonNegativeFloat = 1.0
    """λ_ka of the knowledge alignment loss (reimplementation: an unweighted sum, 1)."""
    adversarial_epsilon: NonNegativeFloat = 0.1
    """ε of the adversarial perturbation of the multi-modal rows; 0 turns adversarial training off
    (not published in the files read; 0.1 assumed)."""
    loss: Literal["nssa", "margin"] = "margin"
    """Ranking loss over negatives (see :mod:`momok.models.baselines.kge`)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows (the reimplementation does); false (default): frozen."""

    def __post_init__(self):
        super().__post_init__()
        check_modalities(self.modalities, require_file=False)
        if self.sampler.name != "uniform":
            raise ValueError(f"mmkrl draws uniform negatives; sampler {self.sampler.name!r} is not supported")
        if self.dim < 1 or self.num_negatives < 1 or self.chunk_elements < 1:
            raise ValueError("dim, num_negatives and chunk_elements must be at least 1")
        if min(self.alignment_weight, self.adversarial_epsilon, self.adversarial_temperature) < 0:
            raise ValueError("alignment_weight, adversarial_epsilon and adversarial_temperature must not be negative")


def _xavier(shape, generator) -> nn.Parameter:
    return nn.Parameter(uniform(shape, math.sqrt(6.0 / (shape[0] + shape[1])), generator))


def _linear(dim: int, generator, bias: bool = False) -> nn.Linear:
    layer = nn.Linear(dim, dim, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(uniform(layer.weight.shape, 1.0 / math.sqrt(dim), generator))
    return layer


class MMKRL(CachedEntityRows, KGEModel):
    """Entity rows are ``[e ; m]`` (width 2d, ``m`` = 0 in the structure-only variant); relation rows
    the raw ``r`` (module docstring)."""

    def __init__(self, options: MMKRLOptions, context: BuildContext):
        super().__init__(options, context)
        d, g = options.dim, context.generator
        self.file_modalities = check_modalities(options.modalities, require_file=False)
        self.entity = _xavier((context.num_entities, d), g)
        self.relation = _xavier((2 * context.num_relations, d), g)
        self.structure_projection = _linear(d, g)
        self.alignment_projection = _linear(d, g)
        self.biases = nn.ParameterDict({k: nn.Parameter(torch.randn(d, generator=g)) for k in ("head", "relation", "tail")})
        self.inputs = ModalityInputs(self.file_modalities, {m: d for m in self.file_modalities}, context.features,
                                     context.num_entities, train_features=options.train_features, generator=g)
        self._cache = ParameterCache()

    # -- representations
    def multimodal_rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        """``m = Σ_k P_k x_k`` of ``ids`` (``None``: all entities); zeros without feature modalities."""
        if not self.file_modalities:
            shape = (self.num_entities,) if ids is None else tuple(ids.shape)
            return self.entity.new_zeros(*shape, self.options.dim)
        return sum(self.inputs(m, ids) for m in self.file_modalities)

    def _rows(self, ids):
        structure = self.entity if ids is None else self.entity[ids]
        return torch.cat([structure, self.multimodal_rows(ids)], dim=-1)

    def relation_rows(self, ids):
        return self.relation[ids]

    def reconstruct(self, x: torch.Tensor, bias: str) -> torch.Tensor:
        """``W_s x + b`` with ``b`` one of ``head``, ``relation``, ``tail``."""
        return self.structure_projection(x) + self.biases[bias]

    # -- score
    def _distance(self, a, r, b):
        if self.options.normalize:
            a, r, b = (F.normalize(x, dim=-1) for x in (a, r, b))
        return torch.linalg.vector_norm(a + r - b, ord=self.options.p, dim=-1)

    def interact(self, h, r, t):
        d = self.options.dim
        (hs, hm), (ts, tm) = h.split(d, dim=-1), t.split(d, dim=-1)
        r = self.reconstruct(r, "relation")
        energy = self._distance(self.reconstruct(hs, "head"), r, self.reconstruct(ts, "tail"))
        if not self.file_modalities:
            return -energy
        energy = energy + self._distance(hm, r, tm) + self._distance(hm, r, ts) + self._distance(hs, r, tm)
        return -energy / 4

    # -- training
    def alignment_loss(self, heads, relations, tails) -> torch.Tensor:
        """``L_ka`` of a batch of triples (module docstring)."""
        h, r, t = self.entity[heads], self.relation[relations], self.entity[tails]
        loss = (F.mse_loss(h, self.reconstruct(h, "head")) + F.mse_loss(t, self.reconstruct(t, "tail"))
                + F.mse_loss(r, self.reconstruct(r, "relation")))
        if self.file_modalities:
            loss = loss + sum(F.mse_loss(self.alignment_projection(x), self.multimodal_rows(ids))
                              for x, ids in ((h, heads), (t, tails)))
        return loss

    def _ranking_loss(self, h_rows, r_rows, candidate_rows) -> torch.Tensor:
        o = self.options
        scores = self.interact(h_rows.unsqueeze(1), r_rows.unsqueeze(1), candidate_rows)
        return ranking_loss(o.loss, scores, o.margin, o.adversarial_temperature)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        negatives = self.sampler.sample(batch.heads, batch.relations, batch.tails, o.num_negatives, model=self)
        candidates = torch.cat([batch.tails.unsqueeze(1), negatives.entities], dim=1)
        h_rows, r_rows, c_rows = self.entity_rows(batch.heads), self.relation_rows(batch.relations), \
            self.entity_rows(candidates)
        ranking = self._ranking_loss(h_rows, r_rows, c_rows)
        alignment = self.alignment_loss(batch.heads, batch.relations, batch.tails)
        total = ranking + o.alignment_weight * alignment
        parts = {o.loss: float(ranking.detach()), "alignment": float(alignment.detach())}
        if self.file_modalities and o.adversarial_epsilon > 0:
            h_adv, c_adv = self.perturbed(ranking, h_rows, c_rows)
            adversarial = self._ranking_loss(h_adv, r_rows, c_adv)
            total = total + adversarial
            parts["adversarial"] = float(adversarial.detach())
        return total, parts

    def perturbed(self, ranking, h_rows, c_rows) -> tuple[torch.Tensor, torch.Tensor]:
        """Head and candidate rows with ``m + ε g/‖g‖_2`` in their multi-modal half, ``g`` = ∂ranking/∂m
        of each row (detached)."""
        d, eps = self.options.dim, self.options.adversarial_epsilon
        grads = torch.autograd.grad(ranking, [h_rows, c_rows], retain_graph=True)
        shifted = []
        for rows, g in zip((h_rows, c_rows), grads):
            g = g.detach()[..., d:]
            delta = eps * g / g.norm(dim=-1, keepdim=True).clamp_min(1e-12)
            shifted.append(rows + torch.cat([torch.zeros_like(delta), delta], dim=-1))
        return shifted[0], shifted[1]


@register("mmkrl", MMKRLOptions)
def build_mmkrl(options: MMKRLOptions, context: BuildContext) -> MMKRL:
    return MMKRL(options, context)
