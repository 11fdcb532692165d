"""Negative samplers: which negatives a negative-sampling loss (``nssa``, ``margin``) contrasts with each answer.

A sampler is a training procedure around a base scorer, not a model: every negative-sampling model
(:class:`~momok.models.baselines.kge.KGEModel` and its subclasses) takes one from its ``sampler:``
option group and calls :meth:`NegativeSampler.sample` in its ``loss``. A draw is a
:class:`Negatives`: the entity each negative is drawn from, and optionally which negatives replace only
the *image part* of the answer (MANS's visual negatives; the model builds those rows).

Samplers draw from torch's global RNG unless given a ``generator``; the trainer seeds that RNG from
``seed`` and saves it in ``last.pt``, so ``--resume`` continues the same draws.

``uniform`` (the default): each negative an entity drawn uniformly among all E entities (the answer
itself included, as before samplers existed; it costs one ``torch.randint`` call, so the numbers of
every earlier run are unchanged).

``mans``: Modality-Aware Negative Sampling (Zhang, Chen and Zhang, IJCNN 2023, arXiv 2304.11618;
official code zjukg/MANS, ``mmns/module/model/MMTransE.py``, read for facts only). Its base model has a
structural embedding ``e_s`` and a visual embedding ``e_v = W x_img`` per entity (IKRL's four TransE
terms, here ``model: {name: ikrl}`` or ``tbkgc``). MANS's contribution is the *visual negative*
``(h, r, t̃)`` whose tail keeps the answer's structural embedding ``e_s(t)`` and takes the visual embedding
``e_v(t')`` of another entity ``t'``: contrasting it with ``(h, r, t)`` aligns each entity's structural
and visual embeddings. Its variants (``mode``; named as in the official README, the details from the
official code):

* ``visual`` (MANS-V): every negative is a visual negative;
* ``hybrid`` (MANS-H): a share β (``visual_share``) of the batch's negatives are visual, the others
  normal negatives (``t'`` replaces the whole entity). As the official code: of the ``B × n`` negatives
  of a batch, taken negative-major (negative j of every query before negative j + 1), the first
  ``⌊β · B · n⌋`` are visual;
* ``two_stage`` (MANS-T): visual negatives for the first ``visual_steps`` training steps, then normal
  ones (the step count is a buffer of the sampler, so it is in every checkpoint and survives
  ``--resume``). The official trainer switches after half of the epochs (its ``beta`` default 0.5,
  which ``run.py`` does not set); a sampler does not know the epochs, so give it
  ``visual_steps = 0.5 × epochs × steps per epoch`` for the same schedule;
* ``adaptive`` (MANS-A): hybrid with a β chosen per batch from the model: the share of the batch's
  normal negatives ``t'`` whose cross-modal energy ``d(h_v, t'_s) + d(h_s, t'_v)`` is lower than their
  same-modal energy ``d(h_s, t'_s) + d(h_v, t'_v)`` (official ``neg_mode=adaptive``; the model provides
  :meth:`~momok.models.baselines.kge.KGEModel.prefers_cross_modal`, TBKGC/IKRL's ``s`` and ``m`` parts).

The official scripts (DB15K and FB15K: TransE kernel = IKRL's four energies, d = 128, L1, normalised,
margin loss γ = 12 on DB15K, one negative per triple, 400 batches per epoch, Adam with lr 1.0, 1000
epochs; hybrid β = 0.3) give no settings for MKG-W/MKG-Y. Example (MANS-H over IKRL)::

    features: {image: features/MKG-Y/image.safetensors}
    model: {name: ikrl, dim: 128, margin: 12.0, adversarial_temperature: 0.0, num_negatives: 1,
            sampler: {name: mans, mode: hybrid, visual_share: 0.3}}

``mmrns``: MMRNS (Xu et al., ACM MM 2022), a learned relation-aware sampler with its own parameters and
loss; see :mod:`momok.models.mmrns`.

What a sampler may hand the loss besides the entities (:class:`Negatives`): ``mixing``, straight-through
one-hot weights over a candidate ``pool`` (the model scores the mixtures of the pool's rows, so the
loss's gradient reaches the sampler), and ``loss``, the sampler's own loss term, a function of the
loss's detached per-negative weights. A sampler that reads every known training answer of each query
says so with ``needs_labels`` (the trainer then fills ``TrainBatch.labels``), and one with a learning
rate of its own (``lr``) gets its own Adam param group (:meth:`~momok.models.base.LinkPredictor.parameter_groups`).

Departures: the visual source ``t'`` is drawn uniformly among the entities *with* an image other than
the answer (an entity without image would give the answer's own placeholder vector back, i.e. the
positive itself); MANS's normal negatives are drawn uniformly among the E - 1 entities other than the
answer (the official OpenKE loader additionally filters known true triples and picks head or tail
corruption by the Bernoulli trick; here only answers of inverse-augmented queries are corrupted, as
for every model); MANS-A's visual negatives take their image from a separate draw like the other modes
(the official code reuses the normal negative's entity).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from momok.bounds import NonNegativeInt, PositiveFloat, PositiveInt, UnitInterval
from momok.errors import ConfigError
from momok.modalities import FILE_MODALITIES

@dataclass
class SamplerOptions:
    """``model.sampler:`` the negative sampler of a negative-sampling model (``loss: nssa`` or ``margin``)."""

    name: Literal["uniform", "mans", "mmrns"] = "uniform"
    """``uniform``: negatives uniform over all entities; ``mans``: modality-aware (image-part) negatives,
    for models with an image part (``ikrl``, ``tbkgc`` with image); see :mod:`momok.models.sampling`;
    ``mmrns``: relation-enhanced learned negatives (:mod:`momok.models.mmrns`), any negative-sampling model."""
    mode: Literal["visual", "hybrid", "two_stage", "adaptive"] = "hybrid"
    """(mans) ``visual`` (MANS-V), ``hybrid`` (MANS-H), ``two_stage`` (MANS-T) or ``adaptive`` (MANS-A)."""
    visual_share: UnitInterval = 0.5
    """(mans, hybrid) β, the share of each batch's negatives that are visual negatives."""
    visual_steps: NonNegativeInt = 1000
    """(mans, two_stage) training steps with visual negatives before normal negatives take over."""
    pool_size: PositiveInt = 1500
    """(mmrns) candidates drawn uniformly (one pool per batch) among which the negatives are sampled
    (official ``--pre_sample_num`` 1500)."""
    attention_dim: PositiveInt = 50
    """(mmrns) width of the projected image/text vectors and of the sampler's relation vectors (official 50)."""
    hidden_dim: PositiveInt = 100
    """(mmrns) hidden width of the structural channel's gate MLP (official 100)."""
    exploration_temperature: PositiveFloat = 10.0
    """(mmrns) τ₀ of the sampling temperature τ = τ₀ / (1 + ln(step + 1)) (official ``--exploration_temp`` 10)."""
    loss_rate: PositiveFloat = 100.0
    """(mmrns) the contrastive loss of the three channels is divided by 3 × this (official ``--loss_rate`` 100)."""
    modalities: tuple[str, ...] = ("image", "text")
    """(mmrns) the feature files its semantic channels read, loaded whatever the base model's own
    ``modalities`` (a channel whose file is absent under ``features.allow_missing`` is left out)."""
    lr: PositiveFloat | None = None
    """(mmrns) learning rate of the sampler's parameters, an Adam param group of their own (official
    ``--kca_lr``; README example 1e-4); null: ``training.lr``."""


    def __post_init__(self):
        bad = [m for m in self.modalities if m not in FILE_MODALITIES]
        if bad or len(set(self.modalities)) != len(self.modalities):
            raise ValueError(f"model.sampler.modalities: a subset of {list(FILE_MODALITIES)} without repeats, "
                             f"got {list(self.modalities)}")

    def file_modalities(self) -> list[str]:
        """The feature files the sampler reads besides the model's (mmrns: ``modalities``)."""
        return list(self.modalities) if self.name == "mmrns" else []


@dataclass
class Negatives:
    """A draw of ``n`` negatives for each of ``B`` answers.

    entities: ``LongTensor[B, n]``, the entity each negative comes from.
    image_only: ``BoolTensor[B, n]`` or ``None``: True where the negative is the answer with only its
    image part taken from ``entities`` (a MANS visual negative); ``None``: every negative is the whole
    entity ``entities``.
    mixing: ``FloatTensor[B, n, C]`` or ``None``: straight-through one-hot weights of each negative over the
    candidates ``pool`` (``LongTensor[C]``): one in value at ``entities``, with the gradient of the
    sampler's soft sample; the model scores ``mixing @ rows(pool)`` instead of ``rows(entities)``.
    loss: ``None``, or the sampler's own loss term as a function of the loss's detached weights of the
    negatives ``[B, n]`` (MMRNS's contrastive loss); the model adds it to its loss.
    """

    entities: torch.Tensor
    image_only: torch.Tensor | None = None
    mixing: torch.Tensor | None = None
    pool: torch.Tensor | None = None
    loss: Callable[[torch.Tensor], torch.Tensor] | None = None


class NegativeSampler(nn.Module):
    """Interface: :meth:`sample` draws negatives for a batch of queries (a module, so that a sampler's
    state, e.g. a step count, is saved with the model)."""

    #: whether :meth:`sample` reads ``labels`` (every known training answer of each query)
    needs_labels: bool = False

    def sample(self, heads: torch.Tensor, relations: torch.Tensor, answers: torch.Tensor, num_negatives: int,
               generator: torch.Generator | None = None, model=None, labels: torch.Tensor | None = None
               ) -> Negatives:
        """Negatives for the queries ``(heads[i], relations[i])`` with answers ``answers[i]`` (all ``[B]``);
        ``model``: the model being trained, for samplers that read it (MANS-A, MMRNS); ``labels``:
        ``BoolTensor[B, E]`` of every training answer of each query (given when ``needs_labels``)."""
        raise NotImplementedError


class UniformSampler(NegativeSampler):
    """Each negative uniform over all entities (the answer may be drawn)."""

    def __init__(self, num_entities: int):
        super().__init__()
        self.num_entities = num_entities

    def sample(self, heads, relations, answers, num_negatives, generator=None, model=None, labels=None):
        return Negatives(torch.randint(0, self.num_entities, (answers.shape[0], num_negatives),
                                       device=answers.device, generator=generator))


def uniform_excluding(answers: torch.Tensor, pool: torch.Tensor, num: int,
                      generator: torch.Generator | None) -> torch.Tensor:
    """``[B, num]`` entities drawn uniformly from ``pool`` (sorted entity ids) leaving out each ``answers[i]``.

    Draws an index into ``pool`` minus one slot where the answer is in it, then skips the answer's slot.
    """
    answers = answers.contiguous()
    position = torch.searchsorted(pool, answers)
    inside = (position < len(pool)) & (pool[position.clamp_max(len(pool) - 1)] == answers)
    size = len(pool) - inside.long()  # [B] pool size without the answer
    u = torch.rand((answers.shape[0], num), device=answers.device, generator=generator)
    index = (u * size.unsqueeze(1)).long().clamp_max(size.unsqueeze(1) - 1)
    index = index + (inside.unsqueeze(1) & (index >= position.unsqueeze(1))).long()
    return pool[index]


class MANSSampler(NegativeSampler):
    """Modality-aware negatives (module docstring): visual negatives swap only the image part of the answer."""

    def __init__(self, options: SamplerOptions, num_entities: int, image_mask: torch.Tensor):
        super().__init__()
        self.options = options
        self.register_buffer("all_entities", torch.arange(num_entities), persistent=False)
        self.register_buffer("with_image", torch.nonzero(image_mask.bool()).flatten(), persistent=False)
        if len(self.with_image) < 2:
            raise ConfigError("model.sampler: mans needs at least two entities with an image "
                              f"({len(self.with_image)} in the image feature file)")
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def visual_mask(self, batch: int, num: int, share: float, device) -> torch.Tensor:
        """``BoolTensor[B, n]``: which negatives of this step are visual (advances the step count);
        ``share``: β of ``hybrid``/``adaptive``."""
        o = self.options
        if o.mode == "visual" or (o.mode == "two_stage" and int(self.steps) < o.visual_steps):
            mask = torch.ones(batch, num, dtype=torch.bool, device=device)
        elif o.mode == "two_stage":
            mask = torch.zeros(batch, num, dtype=torch.bool, device=device)
        else:  # the first ⌊β·B·n⌋ negatives in negative-major order
            count = int(share * batch * num)
            mask = (torch.arange(batch * num, device=device) < count).reshape(num, batch).T
        if self.training:
            self.steps += 1
        return mask

    def sample(self, heads, relations, answers, num_negatives, generator=None, model=None, labels=None):
        normal = uniform_excluding(answers, self.all_entities, num_negatives, generator)
        share = self.options.visual_share
        if self.options.mode == "adaptive":
            with torch.no_grad():
                share = float(model.prefers_cross_modal(heads, relations, normal).float().mean())
        visual = self.visual_mask(answers.shape[0], num_negatives, share, answers.device)
        image_sources = uniform_excluding(answers, self.with_image, num_negatives, generator)
        return Negatives(torch.where(visual, image_sources, normal), visual)


def check_sampler(options: SamplerOptions, modalities, *, cross_modal: bool = False) -> None:
    """ValueError (for an options ``__post_init__``) when the sampler needs an image part the model lacks,
    or MANS-A's cross-modal energies (``cross_modal``: the model has them)."""
    if options.name != "mans":
        return
    if "image" not in modalities:
        raise ValueError("model.sampler: mans swaps the image part of entities; this model has none (use a "
                         "model with image in its modalities, e.g. ikrl or tbkgc)")
    if options.mode == "adaptive" and not cross_modal:
        raise ValueError("model.sampler: mode adaptive needs the structure/multimodal energies of tbkgc or ikrl")


def build_sampler(options: SamplerOptions, num_entities: int, features: dict, *, num_relations: int = 0,
                  structure_width: int = 0, generator: torch.Generator | None = None) -> NegativeSampler:
    """The sampler ``options`` names; ``features``: the run's feature tables (MANS reads the image mask,
    MMRNS the image and text rows); MMRNS also needs the number of relations (without inverses), the
    width of the model's structure rows and the build generator (its initial weights)."""
    if options.name == "uniform":
        return UniformSampler(num_entities)
    if options.name == "mmrns":
        from momok.models.mmrns import MMRNSSampler

        return MMRNSSampler(options, num_entities, num_relations, structure_width, features, generator)
    table = features.get("image")
    if table is None:
        raise ConfigError("model.sampler: mans needs image features (set features.image and list image in "
                          "model.modalities)")
    return MANSSampler(options, num_entities, table.mask)
