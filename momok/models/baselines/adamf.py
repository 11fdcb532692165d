"""AdaMF-MAT (Zhang et al. 2024, "Unleashing the Power of Imbalanced Modality Information for Multi-modal
Knowledge Graph Completion"): adaptive modality fusion + modality-adversarial training, RotatE scoring.

**Adaptive multi-modal fusion (AdaMF).** Every entity has a structure embedding ``e_s ∈ R^{2d}`` and one
projected vector per feature modality, ``e_m = P_m x_m ∈ R^{2d}`` (learned placeholder where the
modality is missing, :mod:`momok.models.baselines.multimodal`). Entity-specific weights::

    a_m = softmax_m( w^T tanh(e_m) ),   e = Σ_m a_m e_m       (m over structure, image, text)

with one learned ``w ∈ R^{2d}``. The joint ``e`` (read as ``d`` complex numbers) is scored with RotatE:
``-Σ_k |h_k r_k - t_k|`` (``p = 1``, the official code) or ``-‖h∘r - t‖_2`` (``p = 2``, PyKEEN's
``RotatEInteraction``), ``r_k = exp(iθ_k)``. Training: RotatE's self-adversarial negative-sampling loss
(``nssa``). ``diagnostics()`` returns the head entity's weights ``alpha [B, M]`` (``weights.csv``).

**Modality-adversarial training (MAT),** on when ``mat_weight`` (the paper's μ) > 0. Per feature modality
a generator ``G_m(z, e_s) = W2 LeakyReLU(W1 [z; e_s])`` (``z ~ N(0, I_{noise_dim})``) makes a synthetic
``ê_m``; fusing it with ``e_s`` gives fake joint embeddings ``ê``. With ``s⁺`` the real triple's score and
``ŝ`` the scores of ``(ê_h, r, e_t)``, ``(e_h, r, ê_t)``, ``(ê_h, r, ê_t)``:

* the model (discriminator) adds ``μ · Σ_ŝ L(s⁺, ŝ)`` to its loss (real beats synthetic);
* the generators minimise ``Σ_ŝ L(ŝ, s⁺)`` (synthetic looks real), a second Adam optimiser
  (``training.estimator_lr``; the official ``lrg`` default is 1e-4) stepped after each model step through
  the trainer's ``estimator_parameters()`` / ``estimator_loss()`` hooks;

``L(a, b) = (-log σ(γ + a) - log σ(-γ - b)) / 2`` is the ``nssa`` loss with one negative. The official
scripts for MKG-W, MKG-Y and DB15K all run with ``-mu=0`` (MAT off), hence the default 0.

Departures: inverse relations ``r + R`` have their own phases and head prediction is the inverse tail
query (the official code corrupts heads, with Bernoulli head/tail choice and filtered negatives; here
negatives come from ``sampler``, uniform by default, and replace the query's answer); raw feature rows
are frozen by default (``train_features: true`` fine-tunes them as the official code does).

Defaults: the official code (zjukg/AdaMF-MAT, read for facts only): ``dim`` 200, γ 6 (argument default),
ε 2, α 2, 128 negatives, p = 1, noise 64-d, generator hidden 512, μ 0. Its per-dataset scripts:
MKG-W: dim 200, γ 12, lr 2e-5, 128 negatives, batch 1024, 1000 epochs; MKG-Y: dim 200, γ 4, lr 2e-5;
DB15K: dim 250, γ 12, lr 2e-5 (the README's DB15K example uses lr 1e-4, lrg 1e-4). Example config::

    dataset: {path: data/raw/MKG-Y}
    features: {image: features/MKG-Y/image.safetensors, text: features/MKG-Y/text.safetensors}
    model: {name: adamf, dim: 200, margin: 4.0, num_negatives: 128}
    training: {epochs: 1000, batch_size: 1024, lr: 2.0e-5, estimator_lr: 1.0e-4}
    evaluation: {every: 10, patience: 5}
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from momok.bounds import NonNegativeFloat, PositiveInt
from momok.modalities import MODALITIES
from momok.models.base import TrainBatch
from momok.models.baselines.kge import KGEModel, RotationScoring, as_complex, nssa_loss, pykeen_interaction
from momok.models.baselines.multimodal import ModalityInputs, check_modalities
from momok.models.cache import ParameterCache
from momok.models.init import uniform, uniform_linear
from momok.models.registry import BuildContext, register
from momok.models.sampling import SamplerOptions, check_sampler


@dataclass
class AdaMFOptions:
    """``model:`` options of ``adamf``."""

    dim: PositiveInt = 200
    """Complex dimension d of RotatE (entity, modality and joint vectors have 2d real coordinates)."""
    margin: float = 6.0
    """γ of the loss (official argument default 6; scripts: MKG-Y 4, MKG-W 12, DB15K 12)."""
    epsilon: float = 2.0
    """Init range: entities uniform ±(γ+ε)/(2d), relation phases uniform ±π (official code)."""
    p: int = 1
    """1: sum of complex moduli (official); 2: L2 norm of the complex vector (PyKEEN RotatE)."""
    modalities: tuple[str, ...] = MODALITIES
    """Fused modalities: ``structure`` (required) plus image and/or text feature files."""
    adaptive: bool = True
    """false: equal weights 1/M instead of the attention (ablation of AdaMF's adaptive weights)."""
    train_features: bool = False
    """true: fine-tune the raw feature rows, as the official code does (at its learning rate, 2e-5, they
    barely move); false (default): frozen features. With the toy dataset's learning rate 1e-2, fine-tuned
    rows let TBKGC overfit (test MRR 0.142 with features vs 0.152 without; frozen: 0.179)."""
    loss: Literal["softmax_ce", "nssa", "margin"] = "nssa"
    """Training loss (see :mod:`momok.models.baselines.kge`); the official code: ``nssa``."""
    num_negatives: PositiveInt = 128
    """Negatives per query."""
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    """How negatives are drawn (:mod:`momok.models.sampling`): uniform (default) or ``{name: mans, ...}``
    (needs image in ``modalities``; its visual negatives swap the image part before fusion)."""
    adversarial_temperature: NonNegativeFloat = 2.0
    """α of the self-adversarial weights (official ``adv_temp`` default 2)."""
    regularization: NonNegativeFloat = 0.0
    """λ of the penalty on the batch's structure embeddings (0: off, as official)."""
    regularization_norm: PositiveInt = 2
    """q of the penalty ``‖x‖_q^q``."""
    mat_weight: NonNegativeFloat = 0.0
    """μ, weight of the modality-adversarial term in the model's loss; 0 turns MAT off (no generators)."""
    noise_dim: PositiveInt = 64
    """Dimension of the generators' Gaussian noise."""
    generator_hidden: PositiveInt = 512
    """Hidden width of each generator MLP."""
    chunk_elements: PositiveInt = 1 << 25
    """Memory bound of chunked 1-N scoring (``B × C × 2d`` entries at once); results do not depend on it."""

    def __post_init__(self):
        check_modalities(self.modalities)
        if self.dim < 1 or self.num_negatives < 1 or self.chunk_elements < 1:
            raise ValueError("dim, num_negatives and chunk_elements must be at least 1")
        if self.p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {self.p}")
        if self.mat_weight < 0 or self.adversarial_temperature < 0 or self.regularization < 0:
            raise ValueError("mat_weight, adversarial_temperature and regularization must not be negative")
        if self.noise_dim < 1 or self.generator_hidden < 1:
            raise ValueError("noise_dim and generator_hidden must be at least 1")
        check_sampler(self.sampler, self.modalities)


class Generator(nn.Module):
    """``G(z, e_s) = W2 LeakyReLU(W1 [z; e_s])``, ``z ~ N(0, I)`` from the global torch RNG."""

    def __init__(self, noise_dim: int, in_dim: int, hidden: int, out_dim: int, generator: torch.Generator | None):
        super().__init__()
        self.noise_dim = noise_dim
        self.net = nn.Sequential(uniform_linear(noise_dim + in_dim, hidden, generator), nn.LeakyReLU(),
                                 uniform_linear(hidden, out_dim, generator))

    def forward(self, structure: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(*structure.shape[:-1], self.noise_dim, device=structure.device, dtype=structure.dtype)
        return self.net(torch.cat([noise, structure], dim=-1))


class AdaMF(RotationScoring, KGEModel):
    """RotatE over the adaptively fused entity embeddings, optionally with MAT (module docstring)."""

    def __init__(self, options: AdaMFOptions, context: BuildContext):
        super().__init__(options, context)
        g = context.generator
        width = 2 * options.dim
        self.file_modalities = check_modalities(options.modalities)
        bound = (options.margin + options.epsilon) / width
        self.entity = nn.Parameter(uniform((context.num_entities, width), bound, g))
        self.phase = nn.Parameter(uniform((2 * context.num_relations, options.dim), math.pi, g))
        self.inputs = ModalityInputs(self.file_modalities, {m: width for m in self.file_modalities},
                                     context.features, context.num_entities,
                                     train_features=options.train_features, generator=g)
        self.attention = nn.Parameter(uniform(width, 1.0, g) / math.sqrt(width))
        self.generators = nn.ModuleDict()
        if options.mat_weight > 0:
            for m in self.file_modalities:
                self.generators[m] = Generator(options.noise_dim, width, options.generator_hidden, width, g)
        self.interaction = pykeen_interaction("RotatEInteraction")
        self._cache = ParameterCache()

    # -- fusion
    def fuse(self, parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``parts``: ``[e_s, e_m1, ...]`` each ``[..., 2d]`` -> (joint ``[..., 2d]``, weights ``[..., M]``)."""
        stacked = torch.stack(parts, dim=-2)
        if self.options.adaptive:
            alpha = torch.softmax(torch.tanh(stacked) @ self.attention, dim=-1)
        else:
            alpha = torch.full(stacked.shape[:-1], 1.0 / len(parts), device=stacked.device, dtype=stacked.dtype)
        return (alpha.unsqueeze(-1) * stacked).sum(-2), alpha

    def modality_parts(self, ids: torch.Tensor | None, image_ids: torch.Tensor | None = None) -> list[torch.Tensor]:
        """``[e_s, e_m1, ...]`` of ``ids``, the image part from ``image_ids`` when given (MANS)."""
        structure = self.entity if ids is None else self.entity[ids]
        return [structure] + [self.inputs(m, image_ids if m == "image" and image_ids is not None else ids)
                              for m in self.file_modalities]

    def joint_rows(self, ids: torch.Tensor | None) -> torch.Tensor:
        return self.fuse(self.modality_parts(ids))[0]

    # -- KGEModel hooks
    def entity_rows(self, ids):
        if ids is None:
            return as_complex(self._cache.get(self, "entities", lambda: self.joint_rows(None)))
        return as_complex(self.joint_rows(ids))

    def entity_rows_with_image(self, ids, image_ids):
        return as_complex(self.fuse(self.modality_parts(ids, image_ids))[0])

    def diagnostics(self, heads, relations):
        return {"alpha": self.fuse(self.modality_parts(heads))[1]}

    # -- modality-adversarial training
    def fake_scores(self, batch: TrainBatch) -> list[torch.Tensor]:
        """Scores ``[B]`` of (fake h, r, t), (h, r, fake t), (fake h, r, fake t)."""
        r = self.relation_rows(batch.relations)
        joint, fake = [], []
        for ids in (batch.heads, batch.tails):
            parts = self.modality_parts(ids)
            joint.append(as_complex(self.fuse(parts)[0]))
            fakes = [self.generators[m](parts[0]) for m in self.file_modalities]
            fake.append(as_complex(self.fuse([parts[0]] + fakes)[0]))
        (h, t), (fh, ft) = joint, fake
        return [self.interact(fh, r, t), self.interact(h, r, ft), self.interact(fh, r, ft)]

    def _real_scores(self, batch: TrainBatch) -> torch.Tensor:
        return self.score_candidates(batch.heads, batch.relations, batch.tails.unsqueeze(1))[:, 0]

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = super().loss(batch)
        o = self.options
        if o.mat_weight > 0:
            real = self._real_scores(batch)
            adversarial = sum(nssa_loss(real, fake.unsqueeze(1), o.margin, o.adversarial_temperature)
                              for fake in self.fake_scores(batch))
            total = total + o.mat_weight * adversarial
            parts["mat_discriminator"] = float(adversarial.detach())
        return total, parts

    def estimator_parameters(self) -> list[nn.Parameter]:
        return list(self.generators.parameters())

    def estimator_loss(self, batch: TrainBatch) -> torch.Tensor | None:
        if self.options.mat_weight == 0:
            return None
        o = self.options
        real = self._real_scores(batch).detach()
        return sum(nssa_loss(fake, real.unsqueeze(1), o.margin, o.adversarial_temperature)
                   for fake in self.fake_scores(batch))


@register("adamf", AdaMFOptions)
def build_adamf(options: AdaMFOptions, context: BuildContext) -> AdaMF:
    return AdaMF(options, context)
