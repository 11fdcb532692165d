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
from typing import Literal

import torch
from torch import nn

from momok.bounds import NonNegativeInt, UnitInterval
from momok.errors import ConfigError

@dataclass
class SamplerOptions:
    """``model.sampler:`` the negative sampler of a negative-sampling model (``loss: nssa`` or ``margin``)."""

    name: Literal["uniform", "mans"] = "uniform"
    """``uniform``: negatives uniform over all entities; ``mans``: modality-aware (image-part) negatives,
    for models with an image part (``ikrl``, ``tbkgc`` with image); see :mod:`momok.models.sampling`."""
    mode: Literal["visual", "hybrid", "two_stage", "adaptive"] = "hybrid"
    """(mans) ``visual`` (MANS-V), ``hybrid`` (MANS-H), ``two_stage`` (MANS-T) or ``adaptive`` (MANS-A)."""
    visual_share: UnitInterval = 0.5
    """(mans, hybrid) β, the share of each batch's negatives that are visual negatives."""
    visual_steps: NonNegativeInt = 1000
    """(mans, two_stage) training steps with visual negatives before normal negatives take over."""


@dataclass
class Negatives:
    """A draw of ``n`` negatives for each of ``B`` answers.

    entities: ``LongTensor[B, n]``, the entity each negative comes from.
    image_only: ``BoolTensor[B, n]`` or ``None``: True where the negative is the answer with only its
    image part taken from ``entities`` (a MANS visual negative); ``None``: every negative is the whole
    entity ``entities``.
    """

    entities: torch.Tensor
    image_only: torch.Tensor | None = None


class NegativeSampler(nn.Module):
    """Interface: :meth:`sample` draws negatives for a batch of queries (a module, so that a sampler's
    state, e.g. a step count, is saved with the model)."""

    def sample(self, heads: torch.Tensor, relations: torch.Tensor, answers: torch.Tensor, num_negatives: int,
               generator: torch.Generator | None = None, model=None) -> Negatives:
        """Negatives for the queries ``(heads[i], relations[i])`` with answers ``answers[i]`` (all ``[B]``);
        ``model``: the model being trained, for samplers that read its scores (MANS-A)."""
        raise NotImplementedError


class UniformSampler(NegativeSampler):
    """Each negative uniform over all entities (the answer may be drawn)."""

    def __init__(self, num_entities: int):
        super().__init__()
        self.num_entities = num_entities

    def sample(self, heads, relations, answers, num_negatives, generator=None, model=None):
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

    def sample(self, heads, relations, answers, num_negatives, generator=None, model=None):
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


def build_sampler(options: SamplerOptions, num_entities: int, features: dict) -> NegativeSampler:
    """The sampler ``options`` names; ``features``: the run's feature tables (MANS reads the image mask)."""
    if options.name == "uniform":
        return UniformSampler(num_entities)
    table = features.get("image")
    if table is None:
        raise ConfigError("model.sampler: mans needs image features (set features.image and list image in "
                          "model.modalities)")
    return MANSSampler(options, num_entities, table.mask)
