"""The interface between models, the trainer and the evaluator.

A model scores every candidate tail entity for a batch of (entity, relation) queries. Relation ids run
over ``0..2R-1``: ``r + R`` is the inverse of ``r``, so head prediction ``(?, r, t)`` is the tail query
``(t, r + R, ?)``. The trainer and the evaluator know nothing else about a model, so MoMoK and every
baseline share one training loop and one evaluation protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TrainBatch:
    """One training batch of queries (inverse-relation queries already included).

    heads, relations, tails: ``LongTensor[B]``; ``(heads[i], relations[i])`` is the query and
    ``tails[i]`` its answer in this triple.
    labels: ``BoolTensor[B, E]`` with every training answer of each query, for multi-label losses
    (the authors' BCE); ``None`` when the loss does not need it.
    """

    heads: torch.Tensor
    relations: torch.Tensor
    tails: torch.Tensor
    labels: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "TrainBatch":
        return TrainBatch(
            self.heads.to(device),
            self.relations.to(device),
            self.tails.to(device),
            None if self.labels is None else self.labels.to(device),
        )


class LinkPredictor(nn.Module):
    """Base class of every model. Subclasses set ``num_entities`` and implement ``scores`` and ``loss``."""

    num_entities: int
    #: key of ``scores()`` used for ranking, validation selection and the headline metrics
    ranking_key: str = "score"

    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores ``[B, E]`` of every candidate tail, one entry per score (``ranking_key`` among them)."""
        raise NotImplementedError

    def ranking_scores(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """``scores(heads, relations)[ranking_key]`` alone (what per-epoch validation ranks). A model may
        override it to compute that one score with less work; it must return the same values."""
        return self.scores(heads, relations)[self.ranking_key]

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar training loss of a batch and its parts for logging (name -> float)."""
        raise NotImplementedError

    def estimator_parameters(self) -> list[nn.Parameter]:
        """Parameters of a second optimiser stepped after each model step (ExID's CLUB estimators)."""
        return []

    def estimator_loss(self, batch: TrainBatch) -> torch.Tensor | None:
        """The second optimiser's loss on detached model outputs; ``None`` when there is none."""
        return None

    def fit_on_validation(self, triples: torch.Tensor, known) -> dict[str, float]:
        """Fit what the model's paper fits on the validation split (MoSE's learned ensemble).

        Called by the trainer with gradients off and the model in eval mode, right before each
        validation evaluation, so what it fits is part of the checkpoint of that epoch. ``triples``:
        the validation triples ``[n, 3]`` (without inverses); ``known``: a
        :class:`~momok.evaluation.FilterIndex` of the train and valid triples (never test) for
        filtered ranks. Returns numbers to log; the default fits nothing.
        """
        return {}

    def parameter_groups(self) -> list[tuple[list[nn.Parameter], float]]:
        """Parameters that the model's optimiser trains at a learning rate of their own, one Adam param
        group each, as ``(parameters, lr)`` (MMRNS's sampler with ``sampler.lr``); the others train at
        ``training.lr``. Default: none."""
        return []

    def needs_labels(self) -> bool:
        """Whether ``loss`` reads ``TrainBatch.labels`` (multi-label 1-N losses)."""
        return False

    def diagnostics(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Optional per-query interpretability tensors (MoMoK: modality attention and expert gates)."""
        return {}
