"""RSME (Wang et al. 2021, "Is Visual Context Really Helpful for Knowledge Graph? A Representation
Learning Perspective", ACM MM): ComplEx over entity embeddings mixed with projected image features, plus
a visual-similarity score that a relation-sensitive forget gate lets through or shuts off.

The full text of the paper was not available here; the formulas are those of the released code (the
``ComplEx`` class of RSME's ``models.py``, on the kbc framework of Lacroix et al. 2018, read for facts
only), so section and equation numbers are not cited.

**Entity representation.** Each entity has a structure embedding ``e_s ∈ C^d`` (stored as ``2d`` reals,
real parts first); its feature row ``x`` (image by default) is projected, ``P x ∈ C^d`` (a learned
placeholder where the entity lacks the modality, :mod:`momok.models.baselines.multimodal`), and mixed
with a constant ``α`` (the released code's ``constant`` mode)::

    e = (1 - α) e_s + α P x

**Score.** ComplEx on the mixed embeddings plus the cosine similarity of the two entities' raw feature
rows, scaled by the relation's forget gate ``g_r``::

    s(h, r, t) = β Re(<e_h, w_r, conj(e_t)>) + (1 - β) g_r cos(x_h, x_t)

``cos`` is 0 when either entity lacks the modality (or the feature file is absent). ``forget_gate:
true`` makes ``g_r = σ(θ_r)`` a learned per-relation gate (inverse relations have their own);
``false`` gives ``g_r = 1`` (the released code's ``forget_gate = False`` branch). ``scores()`` returns
``score`` and its two parts, ``structure`` (the ComplEx term) and ``visual`` (``g_r cos``).

**Training.** 1-N cross-entropy over all candidates plus the kbc framework's N3 penalty on the
ComplEx factors of the batch's triples (``λ/B Σ |h|³ + |r|³ + |t|³`` over complex moduli).
``modalities: [structure]`` is the structure-only variant: ComplEx with N3 alone (score = ``structure``).

Departures, all documented: the released code's forget gate is a 0/1 vector per relation computed
beforehand from the image similarities of each relation's training pairs (keeping a "remember rate"
of the relations); a model builder here sees no triples, so the gate is learned instead, and for that
the cross-entropy is taken over the full score (the released code trains on the ComplEx term only and
adds the visual term at evaluation). Its filter gate (dropping images dissimilar to an entity's other
images) needs several images per entity; a feature file holds one vector per entity, so it is left
out. The trainer's Adam replaces kbc's Adagrad. The modality may be ``text`` instead of ``image``
(RSME uses images only; text allows runs where no images exist).

Defaults: ``β`` = 0.95 (the released code's comment ``# beta=0.95`` and the zjukg reimplementation,
zjukg/AdaMF-MAT ``mmkgc/module/model/RSME.py``), init scale 1e-3 (kbc ``init_size``), ``dim`` 128 (the
zjukg reimplementation's default). ``α`` and the N3 weight come from a config file not in the code
read: ``α`` = 0.5 (an equal mix, assumed) and ``λ`` = 0.01 (MoSE's kbc-based default). No per-dataset
settings are published. Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors}
    model: {name: rsme, dim: 128, modalities: [structure, image]}
    training: {epochs: 1000, batch_size: 1024, lr: 0.001}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from momok.bounds import NonNegativeFloat, PositiveFloat, PositiveInt, UnitInterval
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.baselines.mose import complex_query, moduli
from momok.models.baselines.multimodal import ModalityInputs, check_modalities
from momok.models.cache import ParameterCache
from momok.models.inputs import feature_rows
from momok.models.registry import BuildContext, register


@dataclass
class RSMEOptions:
    """``model:`` options of ``rsme``."""

    dim: PositiveInt = 128
    """Complex rank d of the entity and relation embeddings (zjukg reimplementation's default 128)."""
    modalities: tuple[str, ...] = ("structure", "image")
    """``structure`` plus ONE feature modality (``image`` as RSME; ``text`` where no images exist);
    ``[structure]`` alone is the structure-only variant (ComplEx + N3)."""
    alpha: UnitInterval = 0.5
    """α of ``e = (1-α) e_s + α P x`` (released code: a config constant not in the files read; 0.5 assumed)."""
    beta: UnitInterval = 0.95
    """β weighting the ComplEx term against the visual similarity (released code and zjukg: 0.95)."""
    forget_gate: bool = True
    """true: learned per-relation gate ``σ(θ_r)`` on the visual similarity; false: ``g_r = 1``."""
    init_scale: PositiveFloat = 1e-3
    """Structure entities and relations start as N(0, 1) times this (kbc ``init_size`` 1e-3)."""
    regularization: NonNegativeFloat = 0.01
    """λ of the N3 penalty (not in the files read; 0.01 as MoSE's kbc-based default)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen (the released code's fixed vectors)."""

    def __post_init__(self):
        files = check_modalities(self.modalities, require_file=False)
        if len(files) > 1:
            raise ValueError(f"rsme takes one feature modality (image or text), got {files}")
        if self.dim < 1:
            raise ValueError("dim must be at least 1")
        if not (0.0 <= self.alpha <= 1.0 and 0.0 <= self.beta <= 1.0):
            raise ValueError("alpha and beta must be in [0, 1]")
        if self.init_scale <= 0 or self.regularization < 0:
            raise ValueError("init_scale must be positive and regularization not negative")


class RSME(LinkPredictor):
    """ComplEx over mixed structure/feature embeddings plus the gated visual similarity (module docstring)."""

    ranking_key = "score"

    def __init__(self, options: RSMEOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        g = context.generator
        width = 2 * options.dim
        files = check_modalities(options.modalities, require_file=False)
        self.modality = files[0] if files else None
        self.entity = nn.Parameter(torch.randn((context.num_entities, width), generator=g) * options.init_scale)
        self.relation = nn.Parameter(torch.randn((2 * context.num_relations, width), generator=g) * options.init_scale)
        self.gate_logits = nn.Parameter(torch.zeros(2 * context.num_relations))
        self.inputs = ModalityInputs(files, {m: width for m in files}, context.features, context.num_entities,
                                     train_features=options.train_features, generator=g)
        self._tables = ParameterCache()

    # -- representations
    def _entity_table(self) -> torch.Tensor:
        if self.modality is None:
            return self.entity
        a = self.options.alpha
        return (1 - a) * self.entity + a * self.inputs(self.modality, None)

    def entity_table(self) -> torch.Tensor:
        """Mixed entity embeddings ``e`` ``[E, 2d]`` (cached while gradients are off)."""
        return self._tables.get(self, "entity_table", self._entity_table)

    def gates(self, relations: torch.Tensor) -> torch.Tensor:
        """``g_r`` ``[B]``."""
        if self.options.forget_gate:
            return torch.sigmoid(self.gate_logits[relations])
        return torch.ones(relations.shape, dtype=self.gate_logits.dtype, device=relations.device)

    def similarity(self, heads: torch.Tensor) -> torch.Tensor | None:
        """``cos(x_h, x_t)`` ``[B, E]`` of the raw feature rows, 0 where either lacks the modality;
        ``None`` when there is no feature table."""
        if self.modality is None or not self.inputs.has_table[self.modality]:
            return None
        raw, mask = feature_rows(self.inputs, self.modality)
        unit = F.normalize(raw, dim=-1) * mask.unsqueeze(-1).to(raw.dtype)
        return unit[heads] @ unit.T

    # -- LinkPredictor
    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        table = self.entity_table()
        structure = complex_query(table[heads], self.relation[relations]) @ table.T
        similarity = self.similarity(heads)
        if self.modality is None:
            return {"score": structure, "structure": structure}
        b = self.options.beta
        visual = 0.0 if similarity is None else self.gates(relations).unsqueeze(1) * similarity
        score = b * structure + (1 - b) * visual
        visual = torch.zeros_like(structure) if similarity is None else visual
        return {"score": score, "structure": structure, "visual": visual}

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        o = self.options
        table = self._entity_table()
        h, r, t = table[batch.heads], self.relation[batch.relations], table[batch.tails]
        structure = complex_query(h, r) @ table.T
        if self.modality is None:
            logits = structure
        else:
            logits = o.beta * structure
            similarity = self.similarity(batch.heads)
            if similarity is not None:
                logits = logits + (1 - o.beta) * self.gates(batch.relations).unsqueeze(1) * similarity
        fit = F.cross_entropy(logits, batch.tails)
        n3 = sum(moduli(x).pow(3).sum() for x in (h, r, t)) / batch.heads.shape[0]
        parts = {"ce": float(fit.detach()), "n3": float(n3.detach())}
        if self.modality is not None and o.forget_gate:
            parts["mean_gate"] = float(torch.sigmoid(self.gate_logits).mean().detach())
        return fit + o.regularization * n3, parts


@register("rsme", RSMEOptions)
def build_rsme(options: RSMEOptions, context: BuildContext) -> RSME:
    return RSME(options, context)
