"""OTKGE (Cao et al. 2022, "OTKGE: Multi-modal Knowledge Graph Embeddings via Optimal Transport",
NeurIPS): modality embeddings carried into the structural space by an optimal-transport plan, fused with
the structural embeddings and scored by ComplEx.

The paper's full text was not available here; the formulas below are those of the official code
(Lion-ZS/OTKGE ``code/models.py`` ``OTKGE_fb``/``OTKGE_wn`` and ``code/sinkhorn_cal1.py``, read for facts
only), which implements the paper's optimal-transport alignment and its fusion (the Wasserstein
barycenter of the modality embeddings) as a fixed-weight mixture; section and equation numbers are
not cited.

**Transport of a modality into the structural space.** Entities have structural embeddings
``e_s ∈ R^{2d}`` (d complex coordinates: real parts, then imaginary parts) and feature rows
``x_m ∈ R^{D_m}`` per feature modality ``m``. Between the uniform distribution over the ``D_m`` feature
coordinates and the uniform one over the ``2d`` structural coordinates, with the cost of moving
coordinate ``i`` of an entity's feature row to coordinate ``j`` of its structural embedding
``C_ij = σ · (x_i − e_j)²``, entropic OT (Sinkhorn-Knopp, kernel ``K = exp(−λ C)``) gives a plan
``P ∈ R^{D_m × 2d}``. The plan is computed for ``k`` sample entities, averaged, and — without gradient,
as the official code — rescaled into a mapping matrix, to which a learned correction ``Δ_m`` is added::

    M_m = 2d · σ · mean_k P^{(k)} + Δ_m          e_m = x_m M_m ∈ R^{2d}

(σ = ``ot_scale``, λ = ``sinkhorn_reg``, k = ``ot_samples``; Sinkhorn iterates
``p ← (1/D) / (K q + ε)``, ``q ← (1/2d) / (Kᵀ p + ε)`` from ``q = 1/2d``, ε = 1e-16, and stops when the
squared error of the feature-side marginal, checked every 10 iterations, falls under
``sinkhorn_tolerance``; ``P = diag(p) K diag(q)``.) The plan is recomputed at every forward pass, since
``e_s`` changes.

**Fusion and score.** With modality weights α (image) and γ (text)::

    e = (1 − α − γ) e_s + α e_image + γ e_text
    s(h, r, t) = Re(<e_h, r, conj(e_t)>)                       ComplEx, r ∈ C^d

Training is the official one (facebookresearch/kbc, on which the code builds): 1-N cross-entropy over all
entities plus the N3 penalty ``λ_N3 / B · Σ_{f ∈ {|e_h|, |r|, |e_t|}} Σ_k |f_k|³`` (complex moduli of
the batch's factors). ``modalities: [structure]`` is the structure-only variant: ComplEx with N3.

Departures, all documented: the official code takes the OT samples to be entities 0..k−1; here they are
the first k entities that *have* the modality (a missing row would be the placeholder, below); entities
without the modality get a learned placeholder ``z_m ∈ R^{2d}`` in place of ``x_m M_m`` (the official
datasets have a row for every entity); the trainer's Adam instead of the official Adagrad (lr 0.1);
raw feature rows are frozen by default (as the official code, whose rows are fixed tensors);
feature rows are L2-normalised by default (``normalize_features``): ``x_m M_m`` carries the term
``2dσ · x_m P̄``, and with a near-uniform plan ``P̄ ≈ 1/(2dD)`` every coordinate of it is about
``σ/D · Σ_i x_i``; for the toy's raw MobileNetV2 rows (D = 1280, Σ_i x_i ≈ 320) that is ≈ 76 in every
coordinate of every entity, and a 10-epoch toy run stayed at random level (cross-entropy 5.6 ≈ ln 300).

Defaults: the official README's FBIMG run (``OTKGE_fb``): rank d = 500, N3 λ = 1e-3, Adagrad lr 0.1,
batch 5000, 150 epochs; α = 0.1, γ = 0.7, σ = 300, k = 10 samples, λ = 0.1, 1000 Sinkhorn iterations,
tolerance 1e-9, init scale 1e-3. Its WN9IMG run: N3 λ = 5e-3, batch 2000, 200 epochs, γ = 0.8,
σ = 100. No settings for MKG-W, MKG-Y, DB15K or KVC16K are published. Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: otkge, dim: 500, regularization: 0.001}
    training: {epochs: 150, batch_size: 5000, lr: 0.001}
    evaluation: {every: 5, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from momok.bounds import NonNegativeFloat, PositiveFloat, PositiveInt, UnitInterval
from momok.modalities import FILE_MODALITIES, MODALITIES
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.baselines.mose import complex_query, moduli
from momok.models.baselines.multimodal import check_modalities
from momok.models.cache import ParameterCache
from momok.models.init import uniform
from momok.models.inputs import (
    feature_rows,
    register_features,
    table_copy,
    with_placeholder,
)
from momok.models.registry import BuildContext, register

_EPS = 1e-16


@dataclass
class OTKGEOptions:
    """``model:`` options of ``otkge``."""

    dim: PositiveInt = 500
    """Complex rank d (entity and relation embeddings have 2d real coordinates; official ``--rank`` 500)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` (required) plus image and/or text feature files; ``[structure]`` alone is ComplEx + N3."""
    image_weight: UnitInterval = 0.1
    """α, weight of the transported image embedding in the fusion (official ``alpha`` 0.1)."""
    text_weight: UnitInterval = 0.7
    """γ, weight of the transported text embedding (official ``gamma``: 0.7 FBIMG, 0.8 WN9IMG)."""
    ot_scale: PositiveFloat = 300.0
    """σ, scale of the OT cost and of the plan in ``M_m`` (official ``scale``: 300 FBIMG, 100 WN9IMG)."""
    ot_samples: PositiveInt = 10
    """k, entities whose plans are averaged (official ``number`` 10)."""
    sinkhorn_reg: PositiveFloat = 0.1
    """λ of the Sinkhorn kernel ``exp(−λ C)`` (official ``reg`` 0.1)."""
    sinkhorn_iterations: PositiveInt = 1000
    """Most Sinkhorn iterations (official ``maxIter`` 1000)."""
    sinkhorn_tolerance: NonNegativeFloat = 1e-9
    """Stop when the feature-side marginal's squared error is below this (official ``stopThr`` 1e-9)."""
    init_scale: PositiveFloat = 1e-3
    """Entity and relation embeddings start as N(0, 1) times this (official ``init_size``)."""
    regularization: NonNegativeFloat = 1e-3
    """λ_N3 of the N3 penalty (official: 1e-3 FBIMG, 5e-3 WN9IMG)."""
    normalize_features: bool = True
    """L2-normalise every feature row before the transport (a departure, see the module docstring);
    false: the raw rows, as the official code."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen, as the official fixed tensors."""

    def __post_init__(self):
        check_modalities(self.modalities, require_file=False)
        used = self.image_weight * ("image" in self.modalities) + self.text_weight * ("text" in self.modalities)
        if used > 1.0:
            raise ValueError(f"image_weight + text_weight must be at most 1, got {used}")


def sinkhorn_plans(cost: torch.Tensor, reg: float, iterations: int, tolerance: float) -> torch.Tensor:
    """Entropic OT plans ``[k, D, S]`` between uniform marginals for costs ``[k, D, S]`` (module docstring).

    Follows the official ``sinkhorn_knopp``: kernel ``exp(−reg · C)``, 1e-16 in the denominators, the
    marginal error checked every 10 iterations, and the last finite scalings kept if one turns NaN/inf.
    """
    k, D, S = cost.shape
    K = torch.exp(-reg * cost)
    a = torch.full((k, D), 1.0 / D, dtype=cost.dtype, device=cost.device)
    b = torch.full((k, S), 1.0 / S, dtype=cost.dtype, device=cost.device)
    p = a.clone()
    q = b.clone()
    for it in range(1, iterations + 1):
        previous = p, q
        p = a / (torch.bmm(K, q.unsqueeze(-1)).squeeze(-1) + _EPS)
        q = b / (torch.bmm(K.transpose(1, 2), p.unsqueeze(-1)).squeeze(-1) + _EPS)
        if not (torch.isfinite(p).all() and torch.isfinite(q).all()):
            p, q = previous
            break
        if it % 10 == 0:
            marginal = p * torch.bmm(K, q.unsqueeze(-1)).squeeze(-1)
            if float((a - marginal).square().sum(-1).max()) <= tolerance:
                break
    return p.unsqueeze(-1) * K * q.unsqueeze(1)


class OTKGE(LinkPredictor):
    """Structural, transported image and text embeddings, fused, scored by ComplEx (module docstring)."""

    ranking_key = "score"

    def __init__(self, options: OTKGEOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        o, g = options, context.generator
        width = 2 * o.dim
        self.file_modalities = [m for m in FILE_MODALITIES if m in o.modalities]
        self.weights = {"image": o.image_weight, "text": o.text_weight}
        self.entity = nn.Parameter(torch.randn((context.num_entities, width), generator=g) * o.init_scale)
        self.relation = nn.Parameter(torch.randn((2 * context.num_relations, width), generator=g) * o.init_scale)
        self.placeholders = nn.ParameterDict()
        self.deltas = nn.ParameterDict()
        self.has_table: dict[str, bool] = {}
        for m in self.file_modalities:
            self.placeholders[m] = nn.Parameter(uniform(width, 1.0, g) / math.sqrt(width))
            table = context.features.get(m)
            self.has_table[m] = table is not None
            if table is None:
                continue
            rows, mask = table_copy(table, m, context.num_entities)
            if o.normalize_features:
                rows = F.normalize(rows, dim=-1)
            register_features(self, m, rows, mask, trainable=o.train_features)
            self.register_buffer(f"samples_{m}", torch.nonzero(mask).flatten()[:o.ot_samples], persistent=False)
            bound = math.sqrt(6.0 / (rows.shape[1] + width))  # official xavier_uniform
            self.deltas[m] = nn.Parameter(uniform((rows.shape[1], width), bound, g))
        self._tables = ParameterCache()

    # -- representations
    def mapping(self, m: str) -> torch.Tensor:
        """``M_m = 2d · σ · mean_k P^{(k)} + Δ_m`` ``[D_m, 2d]`` (the plan part without gradient)."""
        o = self.options
        raw, _ = feature_rows(self, m)
        samples = getattr(self, f"samples_{m}")
        if len(samples) == 0:
            return self.deltas[m]
        with torch.no_grad():
            x, s = raw[samples].float(), self.entity[samples].float()
            cost = o.ot_scale * (x.unsqueeze(-1) - s.unsqueeze(1)).square()  # [k, D, 2d]
            plan = sinkhorn_plans(cost, o.sinkhorn_reg, o.sinkhorn_iterations, o.sinkhorn_tolerance).mean(0)
        return plan * (self.entity.shape[1] * o.ot_scale) + self.deltas[m]

    def modality_table(self, m: str) -> torch.Tensor:
        """``e_m`` of every entity ``[E, 2d]`` (placeholder where the entity lacks the modality)."""
        placeholder = self.placeholders[m]
        if not self.has_table[m]:
            return placeholder.expand(self.num_entities, -1)
        raw, mask = feature_rows(self, m)
        return with_placeholder(raw @ self.mapping(m), mask, placeholder)

    def _fused(self) -> torch.Tensor:
        used = sum(self.weights[m] for m in self.file_modalities)
        table = (1.0 - used) * self.entity
        for m in self.file_modalities:
            table = table + self.weights[m] * self.modality_table(m)
        return table

    def entity_table(self) -> torch.Tensor:
        """Fused entity embeddings ``e`` ``[E, 2d]`` (cached while gradients are off)."""
        return self._tables.get(self, "entities", self._fused)

    # -- LinkPredictor
    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        table = self.entity_table()
        return {"score": complex_query(table[heads], self.relation[relations]) @ table.T}

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        table = self._fused()
        h, r, t = table[batch.heads], self.relation[batch.relations], table[batch.tails]
        fit = F.cross_entropy(complex_query(h, r) @ table.T, batch.tails)
        n3 = sum(moduli(x).pow(3).sum() for x in (h, r, t)) / batch.heads.shape[0]
        total = fit + self.options.regularization * n3
        return total, {"ce": float(fit.detach()), "n3": float(n3.detach())}


@register("otkge", OTKGEOptions)
def build_otkge(options: OTKGEOptions, context: BuildContext) -> OTKGE:
    return OTKGE(options, context)
