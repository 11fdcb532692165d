"""QEB, the Quadruple Embedding Baseline of TIVA-KG (Wang et al. 2023, "TIVA-KG: A Multimodal Knowledge
Graph with Text, Image, Video and Audio", ACM MM): a translational model whose energy sums ten TransE
terms over structural and multimodal embeddings of heads, relations and tails.

The paper's full text was not available here; the energy is the one of the official repository's README
(Darkbblue/tiva-kg: ``E(h, r, t) = E_s + E_m + E_CS + E_CM + E_MSM + E_SMS + E_MSS + E_SSM + E_SMM +
E_MMS`` with the margin losses ``L_head`` and ``L_tail``) and of its ``train.py`` (read for facts only);
equation numbers of the paper are not cited.

**Embeddings.** Entities have a structural vector ``x_s ∈ R^k`` and a multimodal input, the
concatenation of their feature rows (text, then image; a missing row is replaced by a learned padding
vector of the modality, as the official ``input + padding_flag · padding``). Relations have a structural
vector ``ρ_s ∈ R^k`` and a multimodal vector ``ρ_m ∈ R^k``. Dense layers with tanh map them into the
d-dimensional translation space (one layer shared by the structural entity and relation vectors, as the
official ``txt_proj``)::

    h_s = tanh(W_s x_s + b_s)     r_s = tanh(W_s ρ_s + b_s)
    h_m = tanh(W_m [x_text; x_image] + b_m)     r_m = tanh(W_r ρ_m + b_r)

**Energy** (lower = more plausible; the score is ``−E``). With ``d(a, ρ, c) = ‖a + ρ − c‖_1`` and the
terms named by (head part, relation part, tail part), ``c`` = the sum ``s + m``::

    sss = d(h_s, r_s, t_s)   msm = d(h_m, r_s, t_m)   mss = d(h_m, r_s, t_s)   ssm = d(h_s, r_s, t_m)
    cs  = d(h_s + h_m, r_s, t_s + t_m)
    mmm = d(h_m, r_m, t_m)   sms = d(h_s, r_m, t_s)   mms = d(h_m, r_m, t_s)   smm = d(h_s, r_m, t_m)
    cm  = d(h_s + h_m, r_m, t_s + t_m)

(README names: E_s = sss, E_m = mmm, E_CS = cs, E_CM = cm, E_MSM = msm, and so on.) Training is the
margin loss ``Σ max(0, γ + E(h, r, t) − E(h, r, t'))`` with one corrupted triple per positive
(``loss: margin``, ``num_negatives: 1``, ``adversarial_temperature: 0``; the loss options and the
``sampler:`` group are those of :mod:`momok.models.baselines.kge`). ``relation_multimodal: false`` leaves
out the five terms with ``r_m`` (official ``use_rel_mm``); ``modalities: [structure]`` is the
structure-only variant, energy ``sss`` alone (TransE on tanh-mapped embeddings).

Departures, all documented: TIVA-KG grounds relations in images, videos and audio (``ρ_m`` is the
relation's feature row there); the benchmarks here have no relation features, so ``ρ_m`` is a learned
vector; the structural vectors are learned here (the official code reads fixed pre-trained ones, 40-d,
and learns only the mappings); video and audio features (an LSTM over audio frames) do not exist in
these benchmarks; the official ``L_tail`` scores ``(t, −r, h)`` and drops ``mms`` and ``smm``
(``tail_mult``), here head prediction is the inverse tail query with its own relation vectors (as for
every model) and all terms are kept; negatives come from the sampler (uniform, the answer may be drawn;
the official batches filter known triples); PyTorch's default linear init (official: TF's Glorot).

Defaults: the official ``parameters.py``: d (``mapping_size``) 100, k 40, tanh, dropout 0, margin γ 10,
Adam lr 1e-3, batch 100, 1000 epochs, ``use_rel_mm`` true. No settings for MKG-W, MKG-Y, DB15K or
KVC16K are published. Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: qeb}
    training: {epochs: 1000, batch_size: 100, lr: 0.001}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from momok.bounds import Fraction, NonNegativeFloat, PositiveInt
from momok.modalities import FILE_MODALITIES, MODALITIES
from momok.models.baselines.kge import CachedEntityRows, KGEModel
from momok.models.baselines.multimodal import check_modalities
from momok.models.baselines.options import MarginLossOptions, PenaltyOptions
from momok.models.cache import ParameterCache
from momok.models.init import uniform, uniform_linear
from momok.models.inputs import feature_rows, register_features, table_copy
from momok.models.registry import BuildContext, register
from momok.models.sampling import check_sampler

#: (head part, relation part, tail part) of every energy term; "c" is the sum of the s and m parts
TERMS = {
    "sss": ("s", "s", "s"), "msm": ("m", "s", "m"), "mss": ("m", "s", "s"), "ssm": ("s", "s", "m"),
    "cs": ("c", "s", "c"),
    "mmm": ("m", "m", "m"), "sms": ("s", "m", "s"), "mms": ("m", "m", "s"), "smm": ("s", "m", "m"),
    "cm": ("c", "m", "c"),
}
#: the order of concatenation of the multimodal input (official ``concat_mm``: text, image, ...)
INPUT_ORDER = ("text", "image")


def allowed_terms(has_files: bool, relation_multimodal: bool) -> tuple[str, ...]:
    """The terms a configuration can have: ``sss`` alone without feature modalities."""
    if not has_files:
        return ("sss",)
    return tuple(name for name, (_, rel, _) in TERMS.items() if rel == "s" or relation_multimodal)


@dataclass
class QEBOptions(PenaltyOptions, MarginLossOptions):
    """``model:`` options of ``qeb``; the loss options are those of :mod:`momok.models.baselines.options`
    (the official loss is ``margin``, without a penalty), with the official number of negatives, γ and α."""

    dim: PositiveInt = 100
    """d, the translation space (official ``mapping_size`` 100)."""
    structure_dim: PositiveInt = 40
    """k, size of the structural entity/relation vectors and of ``ρ_m`` (official structural embeddings: 40)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` (required) plus text and/or image feature files; ``[structure]`` alone: energy ``sss``."""
    relation_multimodal: bool = True
    """Use the relation's multimodal vector ``r_m`` and its five terms (official ``use_rel_mm`` true)."""
    energies: tuple[str, ...] = ()
    """Subset of the terms to sum (names in the module docstring); empty (default): every term the
    modalities and ``relation_multimodal`` allow (ten with feature modalities)."""
    dropout: Fraction = 0.0
    """Dropout on every mapped vector (official ``dropout_ratio`` 0)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen, as the official fixed features."""
    num_negatives: PositiveInt = 1
    """Corrupted triples per positive (official: one)."""
    margin: float = 10.0
    """γ (official ``margin`` 10)."""
    adversarial_temperature: NonNegativeFloat = 0.0
    """Self-adversarial α; 0 (official): uniform weights."""

    def __post_init__(self):
        files = check_modalities(self.modalities, require_file=False)
        unknown = [e for e in self.energies if e not in TERMS]
        if unknown:
            raise ValueError(f"energies: unknown {unknown[0]!r}; choose from {list(TERMS)}")
        allowed = allowed_terms(bool(files), self.relation_multimodal)
        extra = [e for e in self.energies if e not in allowed]
        if extra:
            raise ValueError(f"energies: {extra[0]!r} needs parts this configuration lacks (allowed: {list(allowed)})")
        check_sampler(self.sampler, ("structure",))  # no image part of its own for MANS to swap

    def terms(self) -> tuple[str, ...]:
        """The energy terms summed."""
        has_files = any(m in self.modalities for m in FILE_MODALITIES)
        return tuple(self.energies) or allowed_terms(has_files, self.relation_multimodal)


class PaddedConcatenation(nn.Module):
    """Concatenated feature rows ``[x_m1; x_m2; ...]`` with a learned padding vector per modality in place
    of a missing row (a modality whose file is absent is padding for every entity)."""

    def __init__(self, modalities: list[str], features: dict, num_entities: int, *, train_features: bool,
                 generator: torch.Generator | None):
        super().__init__()
        self.modalities = list(modalities)
        self.num_entities = num_entities
        self.padding = nn.ParameterDict()
        self.has_table: dict[str, bool] = {}
        for m in self.modalities:
            table = features.get(m)
            self.has_table[m] = table is not None
            width = 1 if table is None else table.features.shape[1]
            if table is not None:
                register_features(self, m, *table_copy(table, m, num_entities), trainable=train_features)
            self.padding[m] = nn.Parameter((uniform(width, 1.0, generator) + 1) / 2)  # U[0, 1) as official

    @property
    def width(self) -> int:
        return sum(p.shape[0] for p in self.padding.values())

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``[..., width]`` rows of entity ``ids``."""
        parts = []
        for m in self.modalities:
            padding = self.padding[m]
            if not self.has_table[m]:
                parts.append(padding.expand(*ids.shape, padding.shape[0]))
                continue
            raw, mask = feature_rows(self, m, ids)
            parts.append(torch.where(mask.unsqueeze(-1), raw, padding))
        return torch.cat(parts, dim=-1)


def translation_energy(a: torch.Tensor, rel: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``‖a + rel − c‖_1`` over the last axis (broadcast)."""
    return (a + rel - c).abs().sum(-1)


class QEB(CachedEntityRows, KGEModel):
    """Entity rows ``[h_s ; h_m]``, relation rows ``[r_s ; r_m]`` (width 2d); score ``−E`` (module docstring)."""

    def __init__(self, options: QEBOptions, context: BuildContext):
        super().__init__(options, context)
        o, g = options, context.generator
        self.file_modalities = [m for m in INPUT_ORDER if m in o.modalities]
        self.terms = options.terms()
        self.uses_relation_m = any(TERMS[t][1] == "m" for t in self.terms)
        bound = 6 / o.structure_dim ** 0.5
        self.entity = nn.Parameter(uniform((context.num_entities, o.structure_dim), bound, g))
        self.relation = nn.Parameter(uniform((2 * context.num_relations, o.structure_dim), bound, g))
        self.structure_map = uniform_linear(o.structure_dim, o.dim, g)
        if self.file_modalities:
            self.inputs = PaddedConcatenation(self.file_modalities, context.features, context.num_entities,
                                              train_features=o.train_features, generator=g)
            self.multimodal_map = uniform_linear(self.inputs.width, o.dim, g)
        if self.uses_relation_m:
            self.relation_m = nn.Parameter(uniform((2 * context.num_relations, o.structure_dim), bound, g))
            self.relation_map = uniform_linear(o.structure_dim, o.dim, g)
        self.dropout = nn.Dropout(o.dropout)
        self._cache = ParameterCache()

    def _map(self, layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.tanh(layer(x)))

    # -- representations
    def _rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        if ids is None:
            ids = torch.arange(self.num_entities, device=self.entity.device)
        # each distinct entity once (negatives repeat entities; raw rows are wide)
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        parts = [self._map(self.structure_map, self.entity[unique])]
        if self.file_modalities:
            parts.append(self._map(self.multimodal_map, self.inputs(unique)))
        rows = torch.cat(parts, dim=-1)
        return rows[inverse].reshape(*ids.shape, rows.shape[-1])

    def relation_rows(self, ids):
        parts = [self._map(self.structure_map, self.relation[ids])]
        if self.uses_relation_m:
            parts.append(self._map(self.relation_map, self.relation_m[ids]))
        return torch.cat(parts, dim=-1)

    def penalty_rows(self, heads, relations, tails):
        return [self.entity[heads], self.relation[relations], self.entity[tails]]

    def _parts(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        d = self.options.dim
        s = rows[..., :d]
        if rows.shape[-1] == d:
            return {"s": s}
        m = rows[..., d:]
        return {"s": s, "m": m, "c": s + m}

    def interact(self, h, r, t):
        hp, rp, tp = self._parts(h), self._parts(r), self._parts(t)
        return -sum(translation_energy(hp[a], rp[b], tp[c]) for a, b, c in (TERMS[n] for n in self.terms))


@register("qeb", QEBOptions)
def build_qeb(options: QEBOptions, context: BuildContext) -> QEB:
    return QEB(options, context)
