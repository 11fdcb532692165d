"""VBKGC (Zhang and Zhang 2022, "Knowledge Graph Completion with Pre-trained Multimodal Transformer and
Twins Negative Sampling", KDD workshop, arXiv 2209.07084): TransE energies over structural and
multimodal entity embeddings, trained with *twins* negatives.

Neither the paper's full text nor code was available here; this module follows its abstract ("captures
deeply fused multimodal information for entities [with VisualBERT] and integrates them into the KGC
model"; twins negative sampling "could align different embeddings for entities") and the embedding
model of the authors' group for the same idea (the IKRL-style energies of MANS, Zhang et al. 2023,
zjukg/MANS, and the TBKGC code of zjukg/AdaMF-MAT, read for facts only). Section and equation numbers are
not cited, and the two points below marked *inferred* are this reading, not quoted formulas.

**Embeddings.** Every entity has a structural embedding ``e_s ∈ R^d`` and a multimodal embedding
``e_m = P x`` with ``x`` the entity's fused multimodal feature vector; VBKGC takes ``x`` from a
pre-trained VisualBERT over the entity's image and description. VisualBERT cannot be run offline here,
so ``x`` is the concatenation of the entity's image and text feature rows, ``[x_image; x_text]``
(a learned padding vector in place of a missing row), and ``P`` one linear map of the concatenation
(*simplified*: fusion by the projection instead of a cross-modal transformer). Relations have one
embedding ``r``.

**Energy** (*inferred*: the four IKRL/MANS terms of the same group) with ``n(x) = x/‖x‖_2``
(``normalize``) and ``d(a, c) = ‖n(a) + n(r) − n(c)‖_p``::

    E(h, r, t) = d(h_s, t_s) + d(h_m, t_m) + d(h_s, t_m) + d(h_m, t_s)      (energies [s, m, sm, ms])

and the score is ``−E``; ``energies`` picks a subset of ``[s, m, sm, ms]``.

**Twins negative sampling** (*inferred* from "align different embeddings for entities"). Each drawn
negative entity ``e'`` gives a pair of twin negatives for the answer ``t``: the *structural twin*
``(e'_s, t_m)`` (the answer's multimodal embedding with another entity's structural one) and the
*multimodal twin* ``(t_s, e'_m)``. Contrasting both with ``(t_s, t_m)`` asks each embedding alone to
identify the entity, which ties the two embeddings of an entity together (the cross terms sm, ms see
mismatched pairs). With ``num_negatives`` n the loss sees 2n negatives per query; ``twins: false``
gives ordinary negatives ``(e'_s, e'_m)`` (the ablation). The negative entities come from the
``sampler:`` group (uniform by default) and the losses are those of :mod:`momok.models.baselines.kge`.
``modalities: [structure]`` is the structure-only variant: TransE (energy ``s``, ordinary negatives).

Departures, all documented: VisualBERT features replaced as above; inverse relations ``r + R`` with
their own embedding, head prediction is the inverse tail query (as for every model here); raw feature
rows frozen by default.

Defaults: no hyperparameters of VBKGC are published with the MoMoK paper or found here; the defaults
are those of the zjukg MMKGC code for TBKGC/IKRL (d = 200, L1, normalisation, margin loss γ = 6 with
self-adversarial α = 2, 128 negatives; MKG-W/MKG-Y scripts: batch 1024, lr 2e-5, 1000 epochs), as for
:mod:`momok.models.baselines.tbkgc`. Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: vbkgc}
    training: {epochs: 1000, batch_size: 1024, lr: 2.0e-5}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from momok.bounds import PositiveInt
from momok.modalities import MODALITIES
from momok.models.base import TrainBatch
from momok.models.baselines.kge import CachedEntityRows, KGEModel, ranking_loss
from momok.models.baselines.multimodal import check_modalities
from momok.models.baselines.options import (
    MarginLossOptions,
    PenaltyOptions,
    TransEDistanceOptions,
)
from momok.models.baselines.qeb import PaddedConcatenation
from momok.models.baselines.tbkgc import PAIRS, energy_parts, unit
from momok.models.cache import ParameterCache
from momok.models.init import uniform, uniform_linear
from momok.models.registry import BuildContext, register
from momok.models.sampling import check_sampler

#: the terms of TBKGC's energy (:data:`momok.models.baselines.tbkgc.PAIRS`) that VBKGC sums
ENERGIES = ("s", "m", "sm", "ms")
#: concatenation order of the fused feature vector
INPUT_ORDER = ("image", "text")


@dataclass
class VBKGCOptions(TransEDistanceOptions, PenaltyOptions, MarginLossOptions):
    """``model:`` options of ``vbkgc``; the loss options and their defaults (the zjukg MMKGC code's for
    TBKGC/IKRL) are those of :mod:`momok.models.baselines.options`. Twins apply to the ``margin`` and
    ``nssa`` losses; ``num_negatives`` counts the drawn entities (twins: two negatives each)."""

    dim: PositiveInt = 200
    """d of the structural and multimodal entity embeddings and of relations (zjukg MMKGC scripts: 200)."""
    energies: tuple[str, ...] = ENERGIES
    """Energy terms to sum, a subset of ``[s, m, sm, ms]``; structure-only runs use ``s`` alone."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` (required) plus image and/or text, fused into ``e_m``; ``[structure]`` alone is TransE."""
    twins: bool = True
    """true: twin negatives (structural and multimodal twin per drawn entity); false: ordinary negatives."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen (VBKGC's VisualBERT features are fixed)."""

    def __post_init__(self):
        super().__post_init__()
        files = check_modalities(self.modalities, require_file=False)
        bad = [e for e in self.energies if e not in ENERGIES]
        if bad or not self.energies:
            raise ValueError(f"energies must be a non-empty subset of {list(ENERGIES)}, got {list(self.energies)}")
        if not files and tuple(self.energies) != ("s",):
            if tuple(self.energies) != ENERGIES:
                raise ValueError("a structure-only vbkgc has only the energy s")
            self.energies = ("s",)
        check_sampler(self.sampler, ("structure",))  # no image part of its own for MANS to swap


class VBKGC(CachedEntityRows, KGEModel):
    """Entity rows ``[e_s ; e_m]`` (width 2d, or d structure-only); score ``−E`` (module docstring)."""

    def __init__(self, options: VBKGCOptions, context: BuildContext):
        super().__init__(options, context)
        o, g = options, context.generator
        self.file_modalities = [m for m in INPUT_ORDER if m in o.modalities]
        bound = 6 / math.sqrt(o.dim)
        self.entity = nn.Parameter(uniform((context.num_entities, o.dim), bound, g))
        self.relation = nn.Parameter(uniform((2 * context.num_relations, o.dim), bound, g))
        if self.file_modalities:
            self.inputs = PaddedConcatenation(self.file_modalities, context.features, context.num_entities,
                                              train_features=o.train_features, generator=g)
            self.projection = uniform_linear(self.inputs.width, o.dim, g)
        self._cache = ParameterCache()

    # -- representations
    def multimodal_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """``e_m = P x`` of entity ``ids``."""
        return self.projection(self.inputs(ids))

    def _rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        if ids is None:
            ids = torch.arange(self.num_entities, device=self.entity.device)
        if not self.file_modalities:
            return self.entity[ids]
        # each distinct entity once (negatives repeat entities; raw rows are wide)
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        rows = torch.cat([self.entity[unique], self.multimodal_rows(unique)], dim=-1)
        return rows[inverse].reshape(*ids.shape, rows.shape[-1])

    def relation_rows(self, ids):
        return self.relation[ids]

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def interact(self, h, r, t):
        """``−Σ ‖n(a) + n(r) − n(b)‖_p`` over the energy terms, with TBKGC's arguments (``energy_parts``);
        the norm is taken directly (PyKEEN's interaction, TBKGC's, adds the three vectors in an order that
        depends on their shapes, which can change the last bits of a score)."""
        o = self.options
        hp, tp = (energy_parts(x, o.dim, o.normalize, joint=False) for x in (h, t))
        r = unit(r, o.normalize)
        return -sum(torch.linalg.vector_norm(hp[a] + r - tp[b], ord=o.p, dim=-1)
                    for a, b in (PAIRS[e] for e in o.energies))

    # -- training
    def twin_rows(self, answers: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        """Rows ``[B, 2n, 2d]``: the structural twins ``[e'_s ; t_m]``, then the multimodal twins ``[t_s ; e'_m]``."""
        d = self.options.dim
        answer = self._rows(answers).unsqueeze(1).expand(-1, negatives.shape[1], -1)
        other = self._rows(negatives)
        structural = torch.cat([other[..., :d], answer[..., d:]], dim=-1)
        multimodal = torch.cat([answer[..., :d], other[..., d:]], dim=-1)
        return torch.cat([structural, multimodal], dim=1)

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        if not (o.twins and self.file_modalities) or o.loss == "softmax_ce":
            return super().loss(batch)
        drawn = self.sampler.sample(batch.heads, batch.relations, batch.tails, o.num_negatives, model=self)
        rows = torch.cat([self._rows(batch.tails).unsqueeze(1), self.twin_rows(batch.tails, drawn.entities)], dim=1)
        scores = self.score_candidate_rows(batch.heads, batch.relations, rows)
        main = ranking_loss(o.loss, scores, o.margin, o.adversarial_temperature)
        parts = {o.loss: float(main.detach())}
        return self.add_penalty(main, parts, batch), parts


@register("vbkgc", VBKGCOptions)
def build_vbkgc(options: VBKGCOptions, context: BuildContext) -> VBKGC:
    return VBKGC(options, context)
