"""Option groups shared by the translational multi-modal baselines: TBKGC/IKRL, VBKGC, MMKRL, TransAE, QEB.

Each group is a dataclass mixin; a model's options class inherits the groups it has and overrides a
default (with its own docstring) where its paper's setting differs. The defaults here are those of the
code the MoMoK authors' group ran for its Table 2 numbers of these models (zjukg MMKGC, e.g.
zjukg/AdaMF-MAT ``mmkgc/module/model/TBKGC.py`` and its MKG-W/MKG-Y scripts, read for facts only):
``p_norm=1, norm_flag=True``, ``MarginLoss(margin=6, adv_temperature=2)`` and 128 negatives per query.
The losses themselves are those of :mod:`momok.models.baselines.kge`.

A dataclass lists inherited fields first, in the reverse order of the bases: the fields of these
groups precede a model's own in ``dataclasses.fields`` and in a run's resolved ``config.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from momok.bounds import NonNegativeFloat, PositiveInt
from momok.models.sampling import SamplerOptions


@dataclass
class MarginLossOptions:
    """The ranking loss over sampled negatives (:mod:`momok.models.baselines.kge`)."""

    loss: Literal["softmax_ce", "nssa", "margin"] = "margin"
    """Training loss: ``margin`` (margin ranking, the zjukg MMKGC code's), ``nssa`` (self-adversarial
    negative sampling) or ``softmax_ce`` (1-N cross-entropy, no negatives)."""
    num_negatives: PositiveInt = 128
    """Negatives per query for ``margin`` / ``nssa`` (zjukg MMKGC scripts: 128)."""
    sampler: SamplerOptions = field(default_factory=SamplerOptions)
    """How negatives are drawn (:mod:`momok.models.sampling`; default uniform); the samplers a model
    accepts are checked by its options class."""
    margin: float = 6.0
    """γ of the loss (zjukg MMKGC argument default 6)."""
    adversarial_temperature: NonNegativeFloat = 2.0
    """α of the self-adversarial negative weights (zjukg MMKGC ``adv_temp`` default 2); 0 = uniform
    weights (plain TransE margin loss)."""
    chunk_elements: PositiveInt = 1 << 25
    """Memory bound of chunked 1-N scoring (entries of a ``B × C × width`` tensor built at once, width the
    model's entity row); results do not depend on it."""


@dataclass
class PenaltyOptions:
    """An embedding penalty added to the loss (:class:`momok.models.baselines.kge.KGEModel`)."""

    regularization: NonNegativeFloat = 0.0
    """λ of the penalty on the embeddings of the batch's triples that the model's ``penalty_rows`` names
    (its structure entity and relation embeddings; TransAE: the codes and relations); 0 (default): off."""
    regularization_norm: PositiveInt = 2
    """q of the penalty ``‖x‖_q^q``."""


@dataclass
class TransEDistanceOptions:
    """TransE distances ``‖n(a) + n(r) − n(b)‖_p`` (``n`` an L2 normalisation). An options class with this
    group calls ``super().__post_init__()`` first (it checks ``p``)."""

    p: int = 1
    """Norm of the TransE distances (zjukg MMKGC ``p_norm``: 1)."""
    normalize: bool = True
    """L2-normalise both arguments and the relation inside every distance (zjukg MMKGC ``norm_flag``)."""

    def __post_init__(self):
        if self.p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {self.p}")
