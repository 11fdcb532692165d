"""TransAE (Wang et al. 2019, "Multimodal Data Enhanced Representation Learning for Knowledge Graphs",
IJCNN): a multi-modal autoencoder whose code is the entity embedding of TransE.

The full text of the paper was not available here; what follows is the model as the paper's abstract
and the reimplementation of the MoMoK authors' group describe it (zjukg/NATIVE
``mmkgc/module/model/TransAE.py`` and ``strategy/TransAENegativeSampling.py``, read for facts only:
encoder widths, activations, the loss as TransE's plus the reconstruction error). Section and equation
numbers are not cited.

**Autoencoder.** Each feature modality ``k`` (image, text) of an entity has its row ``x_k``
(L2-normalised; zeros where the entity lacks the modality or the file is absent). Encoder and decoder::

    u_k = ReLU(A_k x_k + a_k)                      (hidden width ``hidden``, per modality)
    z   = ReLU(B [u_img ; u_txt] + b) ∈ R^d        the entity's code = its TransE embedding
    [v_img ; v_txt] = ReLU(C z + c),   x̂_k = D_k v_k + d_k

**Score.** TransE on the codes, ``-‖n(z_h) + r - n(z_t)‖_p`` (``n`` = L2 normalisation when
``normalize``; PyKEEN's ``TransEInteraction``), relations ``r ∈ R^d`` learned.

**Training.** The shared margin (or ``nssa``) loss over uniform negatives
(:mod:`momok.models.baselines.kge`) plus ``reconstruction_weight`` times the mean squared error
``mean_k mean(‖x̂_k - x_k‖²)`` over the distinct entities of the batch's triples that have modality
``k``. ``modalities: [structure]`` is the structure-only variant the paper compares with: TransE with
free entity embeddings in place of the codes (no autoencoder).

Departures, all documented: the decoder's output layer is linear (the reimplementation ends it in a
ReLU, which cannot reconstruct negative feature values); rows are L2-normalised before encoding so that
both modalities enter at one scale; missing modalities enter as zeros and are left out of the
reconstruction error; relation ids cover inverse relations with their own embeddings (as every model
here).

Defaults: ``dim`` 100, hidden width 192, L1 distances, normalisation on (the reimplementation's
defaults); the margin loss with γ = 6, α = 2 and 128 negatives as TBKGC in the same zjukg code
(TransAE's run settings are not in the files read); reconstruction weight 1 (the reimplementation adds
the reconstruction loss unweighted). Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: transae, dim: 100}
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
from momok.models.baselines.kge import (
    CachedEntityRows,
    KGEModel,
    l2_distance_all,
    pykeen_interaction,
)
from momok.models.baselines.multimodal import check_modalities
from momok.models.baselines.options import (
    MarginLossOptions,
    PenaltyOptions,
    TransEDistanceOptions,
)
from momok.models.cache import ParameterCache
from momok.models.init import uniform, uniform_linear
from momok.models.inputs import table_copy
from momok.models.registry import BuildContext, register


@dataclass
class TransAEOptions(TransEDistanceOptions, PenaltyOptions, MarginLossOptions):
    """``model:`` options of ``transae``; the loss options and their defaults (the zjukg MMKGC code's for
    TBKGC) are those of :mod:`momok.models.baselines.options`. TransAE draws ``uniform`` negatives (the only
    ``sampler`` accepted)."""

    dim: PositiveInt = 100
    """Dimension d of the code (the entity embedding) and of relations (reimplementation default 100)."""
    hidden: PositiveInt = 192
    """Width of each modality's hidden encoder/decoder layer (reimplementation: 192)."""
    modalities: tuple[str, ...] = MODALITIES
    """``structure`` plus image and/or text feature files (the autoencoder's inputs); ``[structure]``
    alone is the structure-only variant, TransE with free entity embeddings."""
    normalize: bool = True
    """L2-normalise the entity codes inside the distance (reimplementation ``norm_flag``)."""
    reconstruction_weight: NonNegativeFloat = 1.0
    """Weight of the autoencoder's reconstruction error (reimplementation: unweighted, 1)."""
    loss: Literal["nssa", "margin"] = "margin"
    """Ranking loss over negatives (see :mod:`momok.models.baselines.kge`)."""

    def __post_init__(self):
        super().__post_init__()
        check_modalities(self.modalities, require_file=False)
        if self.sampler.name != "uniform":
            raise ValueError(f"transae draws uniform negatives; sampler {self.sampler.name!r} is not supported")
        if min(self.dim, self.hidden, self.num_negatives, self.chunk_elements) < 1:
            raise ValueError("dim, hidden, num_negatives and chunk_elements must be at least 1")


class AutoEncoder(nn.Module):
    """The multi-modal autoencoder of the module docstring over feature rows given per modality."""

    def __init__(self, in_dims: dict[str, int], hidden: int, dim: int, generator):
        super().__init__()
        self.modalities = list(in_dims)
        M = len(self.modalities)
        self.encoders = nn.ModuleDict({m: uniform_linear(n, hidden, generator) for m, n in in_dims.items()})
        self.joint = uniform_linear(M * hidden, dim, generator)
        self.unjoint = uniform_linear(dim, M * hidden, generator)
        self.decoders = nn.ModuleDict({m: uniform_linear(hidden, n, generator) for m, n in in_dims.items()})

    def encode(self, rows: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = torch.cat([torch.relu(self.encoders[m](rows[m])) for m in self.modalities], dim=-1)
        return torch.relu(self.joint(hidden))

    def decode(self, code: torch.Tensor) -> dict[str, torch.Tensor]:
        hidden = torch.relu(self.unjoint(code)).chunk(len(self.modalities), dim=-1)
        return {m: self.decoders[m](h) for m, h in zip(self.modalities, hidden)}


class TransAE(CachedEntityRows, KGEModel):
    """TransE over autoencoder codes of the entities' feature rows (module docstring)."""

    def __init__(self, options: TransAEOptions, context: BuildContext):
        super().__init__(options, context)
        d, g = options.dim, context.generator
        self.file_modalities = check_modalities(options.modalities, require_file=False)
        bound = 6 / math.sqrt(d)
        self.relation = nn.Parameter(uniform((2 * context.num_relations, d), bound, g))
        if self.file_modalities:
            in_dims = {}
            for m in self.file_modalities:
                table = context.features.get(m)
                if table is None:  # absent file: one zero column, every entity "lacks" the modality
                    rows, mask = torch.zeros(context.num_entities, 1), torch.zeros(context.num_entities, dtype=torch.bool)
                else:
                    rows, mask = table_copy(table, m, context.num_entities)
                    rows = F.normalize(rows, dim=-1) * mask.unsqueeze(1)
                self.register_buffer(f"rows_{m}", rows)
                self.register_buffer(f"mask_{m}", mask)
                in_dims[m] = rows.shape[1]
            self.autoencoder = AutoEncoder(in_dims, options.hidden, d, g)
        else:
            self.entity = nn.Parameter(uniform((context.num_entities, d), bound, g))
        self.interaction = pykeen_interaction("TransEInteraction", p=options.p)
        self._cache = ParameterCache()

    # -- representations
    def feature_rows(self, ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
        return {m: getattr(self, f"rows_{m}") if ids is None else getattr(self, f"rows_{m}")[ids]
                for m in self.file_modalities}

    def codes(self, ids: torch.Tensor | None) -> torch.Tensor:
        """Raw (unnormalised) entity embeddings: the codes ``z``, or the free embeddings of the variant."""
        if not self.file_modalities:
            return self.entity if ids is None else self.entity[ids]
        if ids is None:
            return self.autoencoder.encode(self.feature_rows(None))
        unique, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        return self.autoencoder.encode(self.feature_rows(unique))[inverse].reshape(*ids.shape, self.options.dim)

    def _rows(self, ids):
        z = self.codes(ids)
        return F.normalize(z, dim=-1) if self.options.normalize else z

    def relation_rows(self, ids):
        return self.relation[ids]

    def penalty_rows(self, heads, relations, tails):
        return [self.codes(heads), self.relation[relations], self.codes(tails)]

    def score_all_rows(self, h, r, table):
        if self.options.p == 2:
            return -l2_distance_all(h + r, table)
        return super().score_all_rows(h, r, table)

    # -- training
    def reconstruction_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean over modalities of the mean squared error on the distinct ``ids`` that have the modality."""
        unique = torch.unique(ids)
        rows = self.feature_rows(unique)
        decoded = self.autoencoder.decode(self.autoencoder.encode(rows))
        errors = []
        for m in self.file_modalities:
            present = getattr(self, f"mask_{m}")[unique]
            if present.any():
                errors.append(F.mse_loss(decoded[m][present], rows[m][present]))
        return torch.stack(errors).mean() if errors else self.relation.new_zeros(())

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().loss(batch)
        if self.file_modalities and self.options.reconstruction_weight > 0:
            reconstruction = self.reconstruction_loss(torch.cat([batch.heads, batch.tails]))
            total = total + self.options.reconstruction_weight * reconstruction
            parts["reconstruction"] = float(reconstruction.detach())
        return total, parts


@register("transae", TransAEOptions)
def build_transae(options: TransAEOptions, context: BuildContext) -> TransAE:
    return TransAE(options, context)
