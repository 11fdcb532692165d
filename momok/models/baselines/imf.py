"""IMF (Li et al. 2023, "IMF: Interactive Multimodal Fusion Model for Link Prediction", WWW): modality-
specific encoders, bilinear interactive fusion with a contrastive constraint, one TuckER decoder per
modality and per fused representation, and a decision fusion of their predictions.

The full text of the paper was not available here; the formulas below are those of the released code
(HestiaSky/IMF-Pytorch ``models/model.py``, ``layers/layer.py``, ``main.py``, read for facts only) and of
the paper's abstract (two-stage fusion: bilinear pooling with contrastive learning, then "the learned
weighted average over the predictions of all modalities"); section and equation numbers are not cited.

**Stage 1, modality-specific encoders and interactive fusion.** Each entity has a structure embedding
``e_s ∈ R^d`` and one vector per feature modality ``e_m = P_m x_m ∈ R^d`` (learned placeholder where the
entity lacks the modality, :mod:`momok.models.baselines.multimodal`; the rows ``x_m`` are L2-normalised
first, as the released code does); relations have one embedding per
modality ``r_s, r_m ∈ R^{d_r}``. The multimodal entity and relation are the low-rank bilinear (Tucker /
MUTAN-style) fusion of the modality vectors, with ``k`` rank-one terms::

    e_mm = ReLU( Σ_{i=1..k} Π_m ReLU(W_{m,i} e_m + b_{m,i}) )     (product over structure, image, text)

(and likewise ``r_mm`` from the relation vectors with their own weights; dropout 0.2 on each input). A
contrastive loss pulls an entity's modality vectors together and pushes other entities' apart, with
cosine similarities ``c`` over the batch's head entities::

    L_con = mean_b softplus( mean_{m, b'≠b} c(e_m[b], e_m[b']) - mean_{m<m'} c(e_m[b], e_m'[b]) )

(the mean over ``b'`` counts the zeroed ``b' = b`` entries, as the released code does).

**Stage 2, decoders and decision fusion.** Every representation ``m ∈ {structure, image, text,
multimodal}`` has a TuckER decoder (Balažević et al. 2019) with its own core ``W_m ∈ R^{d_r × d × d}``::

    s_m(h, r, ·) = BN1( BN0(h_m) · (W_m ×_1 r_m) ) · E_m^T        (dropouts 0.3 / 0.4 / 0.5 as TuckER)

trained on 1-N binary cross-entropy with label smoothing 0.1 (targets ``0.9·y + 1/E``), summed over the
decoders. The decision fusion is ``score = Σ_m w_m σ(s_m)``: ``decision: learned`` (the paper's "learned
weighted average") has ``w = softmax(θ)``, θ trained on the BCE of the fused prediction with the decoders'
predictions detached (the weights learn to combine, they do not train the decoders); ``decision:
average`` uses ``w_m = 1/M``, what the released code's evaluation computes. ``scores()`` returns each
decoder's logits (keys ``structure``, ``image``, ``text``, ``multimodal``) and ``score`` (the fusion).
``modalities: [structure]`` is the structure-only variant: TuckER alone (no fusion, no contrastive loss).

Departures, all documented: ``P_m`` is a learned linear projection of the feature file's rows (the
released code average-pools fixed-size VGG/BERT vectors to d = 256 and fine-tunes them); the optional
GAT pre-training of the structure embeddings (off in the released ``main.py``, ``pre_trained: 0``) is not
implemented; the released code defines the contrastive loss but never calls it and divides by the
whole batch matrix's norm (every similarity ≈ 1/B), so its weight is not published: here cosine
similarities and ``contrastive_weight`` (default 1, an unweighted sum); it reports the best test value of
every metric over epochs, here the epoch is selected on validation.

Defaults: the released ``main.py``: ``dim`` = ``relation_dim`` = 256, fusion rank 2 (``MutanLayer(dim,
2)``), Adam lr 5e-4, batch 256 distinct queries (``training.label_batching: true``), 1000 epochs,
evaluation every 10. No per-dataset settings are published (its datasets: DB15K, FB15K, FB15K-237,
YAGO15K). Example config::

    dataset: {path: data/raw/DB15K}
    features: {image: features/DB15K/image.safetensors, text: features/DB15K/text.safetensors}
    model: {name: imf}
    training: {epochs: 1000, batch_size: 256, lr: 0.0005, label_batching: true}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

import dataclasses
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
from momok.models.init import uniform_linear
from momok.models.losses import smoothed_bce
from momok.models.registry import BuildContext, register


@dataclass
class IMFOptions:
    """``model:`` options of ``imf``."""

    dim: int = 256
    """Entity dimension d of every modality (released code: 256)."""
    relation_dim: int = 256
    """Relation dimension d_r (released code: 256; the fusion of relations needs d_r = d)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` (required) plus image and/or text feature files; ``[structure]`` alone is TuckER."""
    fusion_rank: int = 2
    """k, rank-one terms of the bilinear fusion (released code: 2)."""
    fusion_dropout: float = 0.2
    """Dropout on each input of the fusion (released code: 0.2)."""
    input_dropout: float = 0.3
    """TuckER's dropout on the head entity (released code: 0.3)."""
    hidden_dropout: float = 0.4
    """TuckER's dropout on the relation's core matrix (released code: 0.4)."""
    output_dropout: float = 0.5
    """TuckER's dropout on the query vector (released code: 0.5)."""
    label_smoothing: float = 0.1
    """ε of the BCE targets ``(1-ε) y + 1/E`` (released code: 0.9 y + 1/E)."""
    contrastive_weight: float = 1.0
    """Weight of the contrastive loss (not published; 1 = unweighted sum; 0 turns it off)."""
    decision: Literal["learned", "average"] = "learned"
    """Decision fusion: ``learned`` softmax weights (the paper) or the plain ``average`` (released evaluation)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows (the released code fine-tunes its pooled features); false: frozen."""

    def __post_init__(self):
        files = check_modalities(self.modalities, require_file=False)
        if self.dim < 1 or self.relation_dim < 1 or self.fusion_rank < 1:
            raise ValueError("dim, relation_dim and fusion_rank must be at least 1")
        if files and self.relation_dim != self.dim:
            raise ValueError(f"the relation fusion needs relation_dim == dim, got {self.relation_dim} and {self.dim}")
        for name in ("fusion_dropout", "input_dropout", "hidden_dropout", "output_dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.contrastive_weight < 0:
            raise ValueError("contrastive_weight must not be negative")
        if self.decision not in ("learned", "average"):
            raise ValueError(f"decision must be learned or average, got {self.decision!r}")


def unit_rows(features: dict) -> dict:
    """The feature tables with every row L2-normalised (the released code normalises its features so)."""
    return {m: dataclasses.replace(t, features=F.normalize(t.features.float(), dim=-1)) for m, t in features.items()}


def _xavier_normal(shape, generator) -> nn.Parameter:
    std = math.sqrt(2.0 / (shape[0] + shape[-1]))
    return nn.Parameter(torch.randn(shape, generator=generator) * std)


class BilinearFusion(nn.Module):
    """``ReLU(Σ_i Π_m ReLU(W_{m,i} x_m + b_{m,i}))`` over M inputs of width d (module docstring)."""

    def __init__(self, count: int, dim: int, rank: int, dropout: float, generator):
        super().__init__()
        self.rank = rank
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(nn.ModuleList(uniform_linear(dim, dim, generator) for _ in range(rank))
                                    for _ in range(count))

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        total = 0
        for i in range(self.rank):
            term = 1
            for layers, x in zip(self.layers, inputs):
                term = term * torch.relu(layers[i](self.dropout(x)))
            total = total + term
        return torch.relu(total)


class TuckERDecoder(nn.Module):
    """``BN1(BN0(h) · (W ×_1 r))`` with TuckER's dropouts; 1-N scores are this query vector times ``E^T``."""

    def __init__(self, dim: int, relation_dim: int, dropouts: tuple[float, float, float], generator):
        super().__init__()
        bound = math.sqrt(6.0 / (dim * dim + relation_dim * dim))  # xavier_uniform on [d_r, d, d]
        self.core = nn.Parameter((torch.rand((relation_dim, dim, dim), generator=generator) * 2 - 1) * bound)
        self.bn0, self.bn1 = nn.BatchNorm1d(dim), nn.BatchNorm1d(dim)
        self.input_drop, self.hidden_drop, self.output_drop = (nn.Dropout(p) for p in dropouts)

    def forward(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        x = self.input_drop(self.bn0(h))
        w = self.hidden_drop((r @ self.core.flatten(1)).view(-1, h.shape[1], h.shape[1]))
        x = torch.bmm(x.unsqueeze(1), w).squeeze(1)
        return self.output_drop(self.bn1(x))


def contrastive_loss(parts: list[torch.Tensor]) -> torch.Tensor:
    """IMF's contrastive constraint on one batch of entities' modality vectors ``[B, d]`` (module docstring)."""
    unit = [F.normalize(x, dim=-1) for x in parts]
    positive = torch.stack([(a * b).sum(-1) for i, a in enumerate(unit) for b in unit[i + 1:]], dim=1).mean(1)
    negative = torch.cat([(x @ x.T).fill_diagonal_(0.0) for x in unit], dim=1).mean(1)
    return F.softplus(negative - positive).mean()


class IMF(LinkPredictor):
    """Modality encoders, bilinear fusion, TuckER decoders and the decision fusion (module docstring)."""

    ranking_key = "score"

    def __init__(self, options: IMFOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        o, g = options, context.generator
        self.modalities = [m for m in MODALITIES if m in o.modalities]
        self.file_modalities = self.modalities[1:]
        self.decoder_names = self.modalities + (["multimodal"] if self.file_modalities else [])
        relations = 2 * context.num_relations
        self.entity = _xavier_normal((context.num_entities, o.dim), g)
        self.relation = nn.ParameterDict({m: _xavier_normal((relations, o.relation_dim), g) for m in self.modalities})
        self.inputs = ModalityInputs(self.file_modalities, {m: o.dim for m in self.file_modalities},
                                     unit_rows(context.features), context.num_entities,
                                     train_features=o.train_features, generator=g)
        if self.file_modalities:
            M = len(self.modalities)
            self.entity_fusion = BilinearFusion(M, o.dim, o.fusion_rank, o.fusion_dropout, g)
            self.relation_fusion = BilinearFusion(M, o.dim, o.fusion_rank, o.fusion_dropout, g)
        dropouts = (o.input_dropout, o.hidden_dropout, o.output_dropout)
        self.decoders = nn.ModuleDict({m: TuckERDecoder(o.dim, o.relation_dim, dropouts, g)
                                       for m in self.decoder_names})
        self.decision_logits = nn.Parameter(torch.zeros(len(self.decoder_names)))
        self._tables = ParameterCache()

    # -- representations
    def modality_rows(self, ids: torch.Tensor | None) -> list[torch.Tensor]:
        """``[e_s, e_image, e_text]`` (the configured ones) of ``ids`` (``None``: every entity)."""
        structure = self.entity if ids is None else self.entity[ids]
        return [structure] + [self.inputs(m, ids) for m in self.file_modalities]

    def _entity_tables(self) -> dict[str, torch.Tensor]:
        rows = self.modality_rows(None)
        tables = dict(zip(self.modalities, rows))
        if self.file_modalities:
            tables["multimodal"] = self.entity_fusion(rows)
        return tables

    def entity_tables(self) -> dict[str, torch.Tensor]:
        """Every decoder's entity table ``[E, d]`` (cached while gradients are off)."""
        return self._tables.get(self, "entity_tables", self._entity_tables)

    def decision_weights(self) -> torch.Tensor:
        """``w`` of the decision fusion, ``[number of decoders]``."""
        if self.options.decision == "average":
            return torch.full_like(self.decision_logits, 1.0 / len(self.decoder_names))
        return torch.softmax(self.decision_logits, dim=0)

    def decoder_scores(self, heads: torch.Tensor, relations: torch.Tensor,
                       tables: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits ``s_m`` ``[B, E]`` of every decoder."""
        r = {m: self.relation[m][relations] for m in self.modalities}
        if self.file_modalities:
            r["multimodal"] = self.relation_fusion([r[m] for m in self.modalities])
        return {m: self.decoders[m](tables[m][heads], r[m]) @ tables[m].T for m in self.decoder_names}

    def fuse(self, logits: dict[str, torch.Tensor], *, detach: bool = False) -> torch.Tensor:
        """``Σ_m w_m σ(s_m)``."""
        w = self.decision_weights()
        return sum(w[i] * torch.sigmoid(logits[m].detach() if detach else logits[m])
                   for i, m in enumerate(self.decoder_names))

    # -- LinkPredictor
    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.decoder_scores(heads, relations, self.entity_tables())
        out["score"] = self.fuse(out)
        return out

    def needs_labels(self) -> bool:
        return True

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        if batch.labels is None:
            raise ValueError("imf needs TrainBatch.labels (needs_labels() is True)")
        o = self.options
        labels = batch.labels.bool().nonzero(as_tuple=True)
        tables = self._entity_tables()
        logits = self.decoder_scores(batch.heads, batch.relations, tables)
        parts, total = {}, 0.0
        for m, value in logits.items():
            part = smoothed_bce(value, labels, o.label_smoothing)
            parts[f"bce_{m}"] = float(part.detach())
            total = total + part
        if o.decision == "learned" and len(self.decoder_names) > 1:
            fused = self.fuse(logits, detach=True).clamp(1e-7, 1 - 1e-7)
            target = torch.full_like(fused, 1.0 / self.num_entities)
            target[labels] += 1.0 - o.label_smoothing
            decision = F.binary_cross_entropy(fused, target.clamp(max=1.0))
            parts["bce_decision"] = float(decision.detach())
            total = total + decision
        if self.file_modalities and o.contrastive_weight > 0:
            con = contrastive_loss([tables[m][batch.heads] for m in self.modalities])
            parts["contrastive"] = float(con.detach())
            total = total + o.contrastive_weight * con
        return total, parts


@register("imf", IMFOptions)
def build_imf(options: IMFOptions, context: BuildContext) -> IMF:
    return IMF(options, context)
