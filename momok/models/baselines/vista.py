"""VISTA (Lee, Chung and Whang 2023, "VISTA: Visual-Textual Knowledge Graph Representation Learning",
Findings of EMNLP): transformer encoders of entities and relations over their structural, visual and
textual tokens, and a transformer decoder that reads (head, relation, [MASK]) and scores every entity.

The full text of the paper was not available here; the architecture is that of the official code
(the ``VISTA`` class of its ``model.py`` and the README's run commands, read for facts only), so
section and equation numbers are not cited.

**Entity encoder.** Entity ``e`` is the sequence of up to four tokens, run through a transformer
encoder (``entity_layers`` layers); its representation ``ê`` is the output at the first token::

    [ t_ent ,  drop_s(LN_s(e_s)) + p_s ,  drop_v(LN_v(P_v x_img)) + p_v ,  drop_t(LN_t(P_t x_txt)) + p_t ]

``t_ent`` and the positions ``p`` are learned vectors, ``e_s`` the entity's structure embedding, ``x``
its feature rows; a token of a modality the entity lacks (mask 0, or no feature file) is left out by
the attention's key-padding mask (the official code masks missing images so).

**Relation encoder.** ``r̂`` is the first output of ``[t_rel, drop_s(LN_s(w_r)) + p_r]`` through a
transformer encoder (``relation_layers`` layers).

**Decoder and score.** ``[ĥ + p_head, r̂ + p_rel, t_mask + p_tail]`` through a transformer encoder
(``decoder_layers`` layers); the output ``o`` at the ``[MASK]`` position scores every entity,
``s(h, r, t) = <o, t̂>``. Training: 1-N cross-entropy with label smoothing ``label_smoothing``, the
entity table recomputed at every step (as the official code). ``modalities: [structure]`` is the
structure-only variant (entity sequences of ``t_ent`` and the structure token only).

Departures, all documented: the official relation sequence also has visual tokens (images of the
relation's triples) and a textual token (the relation's name through the text encoder); no relation
features exist in the shared feature files, so relations have the structure token only. The official
entity sequence holds several visual tokens (one per image, ``max_img_num``) and the text encoder's
vector; a feature file holds one vector per modality, so one token each. The official code masks the
head or the tail of a triple; here the tail of inverse-augmented queries (as every model here). The
entity table in the candidate list excludes the official ``[MASK]`` row (it is never a right answer).

Defaults: the official README's FB15K237 command (``test_FB15K237.sh``): dim 256, 64 heads, FFN width
2048, one layer per transformer, dropout 0.1, structure-embedding dropout 0.8, visual 0.3, textual 0.0,
label smoothing 0, batch 512, lr 1e-3. No settings for MKG-W, MKG-Y or DB15K are published. Example::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: vista, dim: 256, num_heads: 64}
    training: {epochs: 750, batch_size: 512, lr: 0.001}
    evaluation: {every: 50, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from momok.bounds import Fraction, PositiveInt
from momok.modalities import MODALITIES
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.baselines.multimodal import check_modalities
from momok.models.cache import ParameterCache
from momok.models.inputs import feature_rows, register_features, table_copy
from momok.models.init import uniform
from momok.models.registry import BuildContext, register


@dataclass
class VISTAOptions:
    """``model:`` options of ``vista``."""

    dim: PositiveInt = 256
    """Width d of every token and representation (official FB15K237 run: 256)."""
    num_heads: PositiveInt = 64
    """Attention heads of every transformer (official FB15K237 run: 64); must divide ``dim``."""
    ffn_dim: PositiveInt = 2048
    """Feed-forward width of every transformer layer (official ``hidden_dim`` 2048)."""
    entity_layers: PositiveInt = 1
    """Layers of the entity encoder (official ``num_layer_enc_ent`` 1)."""
    relation_layers: PositiveInt = 1
    """Layers of the relation encoder (official ``num_layer_enc_rel`` 1)."""
    decoder_layers: PositiveInt = 1
    """Layers of the decoder (official ``num_layer_dec`` 1)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` plus image and/or text feature files; ``[structure]`` alone is the structure-only variant."""
    dropout: Fraction = 0.1
    """Dropout inside the transformers (official 0.1)."""
    structure_dropout: Fraction = 0.8
    """Dropout on the structure tokens of entities and relations (official ``emb_dropout`` 0.8)."""
    visual_dropout: Fraction = 0.3
    """Dropout on the visual tokens (official ``vis_dropout`` 0.3)."""
    text_dropout: Fraction = 0.0
    """Dropout on the textual tokens (official ``txt_dropout`` 0.0 for FB15K237)."""
    label_smoothing: Fraction = 0.0
    """Label smoothing of the cross-entropy (official ``smoothing`` 0.0)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows; false (default): frozen, as the official precomputed vectors."""

    def __post_init__(self):
        check_modalities(self.modalities, require_file=False)
        if self.dim % self.num_heads:
            raise ValueError(f"num_heads ({self.num_heads}) must divide dim ({self.dim})")
        for name in ("dropout", "structure_dropout", "visual_dropout", "text_dropout", "label_smoothing"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")


def _xavier(shape, generator) -> nn.Parameter:
    fan_in, fan_out = shape[-1], shape[-2] if len(shape) > 1 else shape[-1]
    return nn.Parameter(uniform(shape, math.sqrt(6.0 / (fan_in + fan_out)), generator))


def _transformer(options: VISTAOptions, layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(options.dim, options.num_heads, options.ffn_dim, options.dropout,
                                       batch_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class VISTA(LinkPredictor):
    """Entity / relation transformer encoders and the [MASK] decoder (module docstring)."""

    ranking_key = "score"
    _DROPOUT = {"image": "visual_dropout", "text": "text_dropout"}

    def __init__(self, options: VISTAOptions, context: BuildContext):
        super().__init__()
        self.options = options
        self.num_entities = context.num_entities
        o, g, d = options, context.generator, options.dim
        self.file_modalities = check_modalities(o.modalities, require_file=False)
        self.entity = _xavier((context.num_entities, d), g)
        self.relation = _xavier((2 * context.num_relations, d), g)
        names = ["entity_token", "relation_token", "mask_token", "pos_structure", "pos_relation_structure",
                 "pos_head", "pos_relation", "pos_tail"] + [f"pos_{m}" for m in self.file_modalities]
        self.tokens = nn.ParameterDict({n: _xavier((1, d), g) for n in names})
        self.norms = nn.ModuleDict({m: nn.LayerNorm(d) for m in ["structure"] + self.file_modalities})
        self.projections = nn.ModuleDict()
        self.has_table: dict[str, bool] = {}
        for m in self.file_modalities:
            table = context.features.get(m)
            self.has_table[m] = table is not None
            if table is None:
                continue
            rows, mask = table_copy(table, m, context.num_entities)
            register_features(self, m, rows, mask, trainable=o.train_features)
            projection = nn.Linear(rows.shape[1], d)
            with torch.no_grad():  # xavier weight, zero bias (official init)
                projection.weight.copy_(_xavier((d, rows.shape[1]), g))
                projection.bias.zero_()
            self.projections[m] = projection
        self.entity_encoder = _transformer(o, o.entity_layers)
        self.relation_encoder = _transformer(o, o.relation_layers)
        self.decoder = _transformer(o, o.decoder_layers)
        with torch.no_grad():  # draw the transformers' weights from the build generator too
            for module in (self.entity_encoder, self.relation_encoder, self.decoder):
                for p in module.parameters():
                    if p.dim() > 1:
                        p.copy_(_xavier(tuple(p.shape), g))
        self._tables = ParameterCache()

    # -- encoders
    def entity_sequence(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Token sequences ``[E, L, d]`` of every entity and their key-padding mask ``[E, L]`` (True = left out)."""
        o, E = self.options, self.num_entities
        tokens = [self.tokens["entity_token"].expand(E, -1),
                  F.dropout(self.norms["structure"](self.entity), o.structure_dropout, self.training)
                  + self.tokens["pos_structure"]]
        missing = [torch.zeros(E, dtype=torch.bool, device=self.entity.device)] * 2
        for m in self.file_modalities:
            if self.has_table[m]:
                raw, mask = feature_rows(self, m)
                x = F.dropout(self.norms[m](self.projections[m](raw)), getattr(o, self._DROPOUT[m]), self.training)
                tokens.append(x + self.tokens[f"pos_{m}"])
                missing.append(~mask)
            else:  # no feature file: the token is never attended to
                tokens.append(self.tokens[f"pos_{m}"].expand(E, -1))
                missing.append(torch.ones(E, dtype=torch.bool, device=self.entity.device))
        return torch.stack(tokens, dim=1), torch.stack(missing, dim=1)

    def _entity_table(self) -> torch.Tensor:
        sequence, missing = self.entity_sequence()
        return self.entity_encoder(sequence, src_key_padding_mask=missing)[:, 0]

    def entity_table(self) -> torch.Tensor:
        """``ê`` of every entity ``[E, d]`` (cached while gradients are off)."""
        return self._tables.get(self, "entity_table", self._entity_table)

    def relation_rows(self, relations: torch.Tensor) -> torch.Tensor:
        """``r̂`` ``[B, d]``."""
        o, B = self.options, relations.shape[0]
        structure = F.dropout(self.norms["structure"](self.relation[relations]), o.structure_dropout, self.training)
        sequence = torch.stack([self.tokens["relation_token"].expand(B, -1),
                                structure + self.tokens["pos_relation_structure"]], dim=1)
        return self.relation_encoder(sequence)[:, 0]

    def queries(self, table: torch.Tensor, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """Decoder output ``o`` at the [MASK] position, ``[B, d]``."""
        B = heads.shape[0]
        sequence = torch.stack([table[heads] + self.tokens["pos_head"],
                                self.relation_rows(relations) + self.tokens["pos_relation"],
                                (self.tokens["mask_token"] + self.tokens["pos_tail"]).expand(B, -1)], dim=1)
        return self.decoder(sequence)[:, 2]

    # -- LinkPredictor
    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        table = self.entity_table()
        return {"score": self.queries(table, heads, relations) @ table.T}

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        table = self._entity_table()
        logits = self.queries(table, batch.heads, batch.relations) @ table.T
        loss = F.cross_entropy(logits, batch.tails, label_smoothing=self.options.label_smoothing)
        return loss, {"ce": float(loss.detach())}


@register("vista", VISTAOptions)
def build_vista(options: VISTAOptions, context: BuildContext) -> VISTA:
    return VISTA(options, context)
