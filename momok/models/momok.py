"""MoMoK, assembled: ReMoKE experts per modality, MuJoD's joint modality and Tucker scores, ExID.

The paper's equations, one line per step of :meth:`MoMoK._forward` and :meth:`MoMoK.loss`
(``docs/ARCHITECTURE.md`` gives the interface), for a batch of queries ``(h, r)`` with r over
``0..2R-1`` (``r + R`` is the inverse of r) and modalities m ∈ {s, v, t}::

    x^m_e       structure: a learned table; image/text: P(feature_e), a learned placeholder where missing
                (for every entity when the modality has no feature file: ``features.allow_missing``)
    h^m_{e,k}   = E_{m,k}(x^m_e)                                 K experts per modality (ReMoKE, experts.py)
    e^m(e, r)   = Σ_k softmax(logits^m_e / τ_r)_k h^m_{e,k}       relation-guided mixture (ReMoKE, Eq. 2)
    e^j, r^j    = Σ_m α_m P_m(e^m),  Σ_m β_m Q_m(r^m)             joint modality j (MuJoD, fusion.py)
    q^m         = BN(e^m(h, r) (W_m ×₁ r^m))                      Tucker query, m ∈ {s, v, t, j} (tucker.py)
    φ_m(h,r,t)  = q^m · e^m(t, r)                                 1-N scores against every candidate t
    L           = Σ_m CE(φ_m(h, r, ·), t) + λ Σ_m L_ExID^m         MuJoD's loss plus ExID (club.py; Eq. 9)
    ranking     = Σ_m φ_m                                         the "joint" score (Eq. 9)

Candidates ``e^m(t, r)``: with candidate relation guidance (the paper) every candidate is encoded under
the query's relation, which ``guided.py`` scores exactly without materialising any relation's
candidates; without it (the authors) every entity is encoded once per step with τ = 1. In eval mode
without autograd the entity-side tables and every relation's contracted cores are kept across
evaluation batches (:class:`~momok.models.cache.ParameterCache`).

Every design choice where the paper and the authors' code differ is an option of :class:`MoMoKOptions`
(defaults: the paper). The loss is, per score m ∈ {s, v, t, j} (enabled ones), softmax cross-entropy of
the 1-N scores against the answer (batch mean; the batch already holds the inverse queries, so this is
the paper's tail + head objective) or the authors' BCE; summed over m; plus ``exid_weight`` times the
ExID bound.

ExID and its estimators: q_θ has one CLUB estimator per ordered expert pair (i ≠ j) per modality (the
authors share one estimator per modality for whichever pair they draw). The model's ``loss`` evaluates
the bound with the estimators' weights detached, so the model loss never gives q_θ a gradient, whatever
the trainer's optimiser holds; ``estimator_loss`` is q_θ's negative log-likelihood on detached expert
outputs, for the second optimiser over ``estimator_parameters()``. The trainer should still exclude
``estimator_parameters()`` from the main optimiser (their gradients come from ``estimator_loss`` only).
Random expert pairs and the permutation e' are drawn from the model's own CPU generator (seeded from
the build generator); its state is saved in the ``state_dict`` (``_extra_state``) for exact resumes.
"""

from __future__ import annotations

import itertools
import typing
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from momok.bounds import Fraction, NonNegativeFloat, PositiveInt
from momok.errors import ConfigError
from momok.modalities import FILE_MODALITIES, JOINT, MODALITIES, SCORE_KEYS, Modality
from momok.models import guided
from momok.models.base import LinkPredictor, TrainBatch
from momok.models.cache import ParameterCache
from momok.models.club import PairwiseCLUB
from momok.models.experts import ModalityExperts, RelationTemperature, gates, mix
from momok.models.fusion import AttentionFusion, projection
from momok.models.inputs import feature_rows, register_features, with_placeholder
from momok.models.groups import RelationGroups
from momok.models.losses import smoothed_bce
from momok.models.registry import BuildContext, register
from momok.models.tucker import CoreDropout, TuckerScorer

#: largest contracted-core table ``[2R, d, d]`` (floats, per score key) kept across evaluation batches
CACHED_CORES_MAX_ELEMENTS = 1 << 25


@dataclass
class MoMoKOptions:
    """The ``model:`` section of a run config for ``name: momok``. Defaults follow the paper; the
    authors' code corresponds to ``loss: bce``, ``joint_score: mean_sigmoid``,
    ``candidate_relation_guidance: false``, ``candidate_gate_noise: true``, ``club_pairs: random``,
    ``club_logvar_term: false``, ``finetune_features: true``, ``feature_pool_dim: 256`` (DB15K,
    KVC16K), ``exid_weight: 0.0001``. Where the paper is silent (``normalize_features``) the default is
    the choice that trains well, documented at the option."""

    #: modalities used, any non-empty subset of structure, image, text (image/text need a feature file)
    modalities: list[Modality] = field(default_factory=lambda: list(MODALITIES))
    #: entity embedding size of every modality and of the joint modality (the paper's d_m; authors: 256)
    dim: PositiveInt = 256
    #: relation embedding size of every modality (d_r; authors: 256)
    relation_dim: PositiveInt = 256

    # --- raw image/text features ---
    #: map from the raw feature vector to ``dim``: "linear" (affine) or "mlp" (Linear-ReLU-Linear)
    feature_projection: Literal["linear", "mlp"] = "linear"
    #: true: the raw feature table is a trainable parameter initialised from the features (authors);
    #: false: a frozen buffer (the paper: frozen pre-trained encoders)
    finetune_features: bool = False
    #: L2-normalise each entity's raw feature vector before use. The paper is silent; the authors' code
    #: does it, and without it raw CNN features (all positive, row norms ~17 for MobileNetV2) condition the
    #: projection so badly that on the toy KG the full model fell behind its structure-only variant
    #: (tests/test_toy_signal.py). Set false to feed the raw vectors.
    normalize_features: bool = True
    #: average-pool raw feature vectors to this width first (1-D adaptive average pooling; the authors
    #: pool to 256 for DB15K/KVC16K with dataset-specific 2-D shapes); null = no pooling
    feature_pool_dim: PositiveInt | None = None

    # --- ReMoKE ---
    #: number of experts K per modality (paper Figure 4 sweeps it; authors: 3)
    num_experts: PositiveInt = 3
    #: dropout on each expert's input while training (authors: 0)
    expert_dropout: Fraction = 0.0
    #: noisy gating: add N(0,1)·softplus(x W_n) to the gate logits while training ("w/o noise" = false)
    gate_noise: bool = True
    #: learnable temperature τ_r = sigmoid(θ_r) per relation id ("w/o relational" = false: τ ≡ 1)
    relation_temperature: bool = True
    #: encode candidate entities under the query's relation temperature too (paper); false = τ = 1 for
    #: candidates, every relation sharing one encoding per step (authors)
    candidate_relation_guidance: bool = True
    #: apply gate noise to the candidate entities' encodings while training (authors: true); the query
    #: entity always gets it when gate_noise is on
    candidate_gate_noise: bool = False

    # --- MuJoD ---
    #: attention weights α over modalities for the joint modality ("w/o adaptive fusion" = false: uniform)
    adaptive_fusion: bool = True
    #: the projections P_m of the joint modality (entity and relation sides): "mlp" (the paper's
    #: two-layer ReLU MLP) or "linear" (affine; makes relation-guided candidate fusion much cheaper, exact)
    fusion_projection: Literal["linear", "mlp"] = "mlp"
    #: train every modality's score (paper); false = "w/o joint training": train and rank by the joint
    #: modality's score j only
    joint_training: bool = True
    #: ranking score "joint": "sum" of the scores of the enabled modalities and j (paper) or
    #: "mean_sigmoid", the mean of their sigmoids (authors)
    joint_score: Literal["sum", "mean_sigmoid"] = "sum"
    #: "softmax_ce" (paper: cross-entropy over all entities) or "bce" (authors: binary cross-entropy on
    #: sigmoid scores against the multi-hot labels, smoothed by label_smoothing)
    loss: Literal["softmax_ce", "bce"] = "softmax_ce"
    #: BCE label smoothing as in TuckER/the authors: target = (1 - ε)·label + 1/E (bce only)
    label_smoothing: Fraction = 0.1

    # --- Tucker scorers ---
    #: dropout on the batch-normalised head embedding (TuckER input_dropout; authors hard-code 0.3)
    input_dropout: Fraction = 0.3
    #: dropout on the relation-contracted core W_r (TuckER hidden_dropout1; authors 0.4)
    hidden_dropout1: Fraction = 0.4
    #: dropout on the batch-normalised query vector (TuckER hidden_dropout2; authors 0.5)
    hidden_dropout2: Fraction = 0.5
    #: how hidden_dropout1 is applied while training: "per_query" (exact TuckER and authors: a d×d mask
    #: per query), "per_relation" (one mask per distinct relation in the batch), "output" (dropout on
    #: e_h W_r instead), "gaussian" (moment-matched Gaussian noise; see momok/models/tucker.py)
    core_dropout: CoreDropout = "per_query"
    #: batch normalisation of the head embedding and the query vector (TuckER, authors)
    batch_norm: bool = True

    # --- ExID ---
    #: λ, weight of the ExID bound in the loss; 0 = "w/o ExID" (no estimators). The paper's grid values
    #: were lost in extraction; 1e-4 is the authors' default (train.py ``mu``)
    exid_weight: NonNegativeFloat = 0.0001
    #: expert pairs disentangled each step: "all" ordered pairs i ≠ j, averaged (paper), or one "random"
    #: ordered pair per step drawn from the model's generator (authors)
    club_pairs: Literal["all", "random"] = "all"
    #: include the −logvar/2 term in q_θ's log-likelihood (original CLUB); false drops it (authors);
    #: it only changes the estimator's loss (it cancels in the bound)
    club_logvar_term: bool = True
    #: hidden width of the CLUB MLPs; null = dim // 2 (authors)
    club_hidden_dim: PositiveInt | None = None

    # --- cost ---
    #: with ``fusion_projection: linear``, recompute the relation-guided joint candidates in the backward
    #: pass instead of storing them (bounded memory; one extra forward per relation group). The MLP
    #: fusion's guided scores always recompute per chunk of candidates (fusion.GuidedMLPScores)
    recompute_candidates: bool = True


def _choices(tp: Any) -> tuple | None:
    """The allowed values of a ``Literal`` option (also as the item type of a list), else None."""
    if typing.get_origin(tp) is list:
        tp = typing.get_args(tp)[0]
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


def validate_options(options: MoMoKOptions) -> None:
    """``ConfigError`` naming the first invalid ``model.<field>``. The config loader already checks the
    ``Literal`` choices; this repeats them for options built in code."""

    def bad(name: str, problem: str) -> ConfigError:
        return ConfigError(f"model.{name}: {problem} (got {getattr(options, name)!r})")

    hints = typing.get_type_hints(MoMoKOptions)
    mods = options.modalities
    allowed_modalities = _choices(hints["modalities"])
    if not isinstance(mods, (list, tuple)) or not mods or any(m not in allowed_modalities for m in mods):
        raise bad("modalities", f"must be a non-empty list of {', '.join(allowed_modalities)}")
    if len(set(mods)) != len(mods):
        raise bad("modalities", "lists a modality twice")
    for f in fields(MoMoKOptions):
        allowed = _choices(hints[f.name])
        if allowed is not None and f.name != "modalities" and getattr(options, f.name) not in allowed:
            raise bad(f.name, f"must be one of {', '.join(allowed)}")
    for name in ("dim", "relation_dim", "num_experts"):
        if not isinstance(getattr(options, name), int) or getattr(options, name) < 1:
            raise bad(name, "must be a positive integer")
    for name in ("feature_pool_dim", "club_hidden_dim"):
        value = getattr(options, name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise bad(name, "must be a positive integer or null")
    for name in ("expert_dropout", "input_dropout", "hidden_dropout1", "hidden_dropout2", "label_smoothing"):
        if not 0.0 <= getattr(options, name) < 1.0:
            raise bad(name, "must be in [0, 1)")
    if options.exid_weight < 0:
        raise bad("exid_weight", "must be >= 0")


def _prepare_features(
    name: str, table: Any, options: MoMoKOptions, num_entities: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw features ``[E, D]`` (normalised/pooled as configured, zero rows where missing) and mask ``[E]``."""
    features = torch.as_tensor(table.features, dtype=torch.float32)
    mask = torch.as_tensor(table.mask).bool()
    if features.dim() != 2 or features.shape[0] != num_entities or mask.shape != (num_entities,):
        raise ConfigError(
            f"features.{name}: table has shape {tuple(features.shape)} and mask {tuple(mask.shape)}, "
            f"expected [{num_entities}, D] and [{num_entities}] (one row per entity)"
        )
    if options.normalize_features:
        features = F.normalize(features, dim=1)
    if options.feature_pool_dim is not None:
        if options.feature_pool_dim > features.shape[1]:
            raise ConfigError(
                f"model.feature_pool_dim: {options.feature_pool_dim} is wider than the {name} features "
                f"({features.shape[1]})"
            )
        features = F.adaptive_avg_pool1d(features.unsqueeze(1), options.feature_pool_dim).squeeze(1)
    features = torch.where(mask.unsqueeze(1), features, torch.zeros(()))
    return features.contiguous(), mask


class MoMoK(LinkPredictor):
    """The MoMoK link predictor; scores keyed "s", "v", "t" (enabled modalities), "j" and "joint"."""

    ranking_key = "joint"

    def __init__(
        self,
        options: MoMoKOptions,
        num_entities: int,
        num_relations: int,
        features: dict[str, Any] | None = None,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        validate_options(options)
        self.options = options
        self.num_entities = num_entities
        self.num_relations = num_relations
        features = features or {}
        o = options
        gen = generator
        #: enabled modality keys, in the fixed order s, v, t (the order of α's columns)
        self.modality_keys = [SCORE_KEYS[m] for m in MODALITIES if m in o.modalities]
        self.score_keys = self.modality_keys + [JOINT]

        # Modality inputs.
        self.structure = None
        if "s" in self.modality_keys:
            self.structure = nn.Parameter(nn.init.xavier_normal_(torch.empty(num_entities, o.dim), generator=gen))
        self.feature_projections = nn.ModuleDict()
        self.placeholders = nn.ParameterDict()
        for name in FILE_MODALITIES:
            if name not in o.modalities:
                continue
            key = SCORE_KEYS[name]
            table = features.get(name)
            if table is not None:
                raw, mask = _prepare_features(name, table, o, num_entities)
                register_features(self, key, raw, mask, trainable=o.finetune_features)
                self.feature_projections[key] = projection(raw.shape[1], o.dim, o.feature_projection, gen)
            # without a feature file (features.allow_missing, e.g. KVC16K's images) every entity gets it
            self.placeholders[key] = nn.Parameter(torch.randn(o.dim, generator=gen) / o.dim**0.5)

        # ReMoKE.
        num_ids = 2 * num_relations
        self.temperature = RelationTemperature(num_ids, o.relation_temperature)
        self.experts = nn.ModuleDict(
            {
                k: ModalityExperts(
                    o.dim, o.num_experts, dropout=o.expert_dropout, gate_noise=o.gate_noise, generator=gen
                )
                for k in self.modality_keys
            }
        )
        # MuJoD.
        self.relation_embeddings = nn.ParameterDict(
            {
                k: nn.Parameter(nn.init.xavier_normal_(torch.empty(num_ids, o.relation_dim), generator=gen))
                for k in self.modality_keys
            }
        )
        fusion = dict(kind=o.fusion_projection, adaptive=o.adaptive_fusion, generator=gen)
        self.entity_fusion = AttentionFusion(self.modality_keys, o.dim, o.dim, **fusion)
        self.relation_fusion = AttentionFusion(self.modality_keys, o.relation_dim, o.relation_dim, **fusion)
        self.scorers = nn.ModuleDict(
            {
                k: TuckerScorer(
                    o.dim,
                    o.relation_dim,
                    input_dropout=o.input_dropout,
                    hidden_dropout1=o.hidden_dropout1,
                    hidden_dropout2=o.hidden_dropout2,
                    batch_norm=o.batch_norm,
                    core_dropout=o.core_dropout,
                    generator=gen,
                )
                for k in self.score_keys
            }
        )
        # ExID.
        pairs = list(itertools.permutations(range(o.num_experts), 2))
        self.register_buffer("expert_pairs", torch.tensor(pairs, dtype=torch.long).reshape(-1, 2), persistent=False)
        self.estimators = nn.ModuleDict()
        if o.exid_weight > 0 and pairs:
            hidden = o.club_hidden_dim or max(1, o.dim // 2)
            for k in self.modality_keys:
                self.estimators[k] = PairwiseCLUB(len(pairs), o.dim, hidden, generator=gen)
        seed = int(torch.randint(0, 2**62, (1,), generator=gen))
        self.rng = torch.Generator().manual_seed(seed)
        # Entity-side tables reused across evaluation batches (see _cached); not part of the state.
        self._eval_cache = ParameterCache()

    def get_extra_state(self) -> dict[str, torch.Tensor]:
        """The state of the generator of expert pairs and permutations travels with the checkpoint."""
        return {"rng_state": self.rng.get_state()}

    def set_extra_state(self, state: dict[str, torch.Tensor]) -> None:
        self.rng.set_state(state["rng_state"])

    # ----------------------------------------------------------------------------------- encoding
    def modality_inputs(self, entities: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``x^m`` ``[N, dim]`` for ``entities`` (all E when None), placeholders where a feature is missing."""
        out = {}
        for k in self.modality_keys:
            if k == "s":
                out[k] = self.structure if entities is None else self.structure[entities]
                continue
            if k not in self.feature_projections:  # no feature file: the placeholder for every entity
                shape = (self.num_entities,) if entities is None else tuple(entities.shape)
                out[k] = self.placeholders[k].expand(*shape, self.options.dim)
                continue
            raw, mask = feature_rows(self, k, entities)
            out[k] = with_placeholder(self.feature_projections[k](raw), mask, self.placeholders[k])
        return out

    def _experts(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Expert outputs ``h^m [N, K, dim]`` of modality inputs ``[N, dim]``."""
        return {k: self.experts[k].experts(inputs[k]) for k in self.modality_keys}

    def _query_side(self, relations, expert_outputs, inputs, noise: bool):
        """Per-modality query embeddings ``e^m`` [B, dim], gates [B, K] and the joint ``e^j``, α."""
        tau = self.temperature(relations)
        embedded, gate_values = {}, {}
        for k in self.modality_keys:
            g = gates(self.experts[k].gate_logits(inputs[k], noise=noise), tau)
            gate_values[k] = g
            embedded[k] = mix(g, expert_outputs[k])
        embedded[JOINT], alpha = self.entity_fusion(embedded)
        return embedded, gate_values, alpha

    def _relation_side(self, relation_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Relation embeddings ``[U, relation_dim]`` per score key: each modality's table ``r^m`` and
        MuJoD's fused joint embedding ``r^j``."""
        rel = {k: self.relation_embeddings[k][relation_ids] for k in self.modality_keys}
        rel[JOINT], _ = self.relation_fusion(rel)
        return rel

    def _cached(self, name: str, compute):
        """``compute()``, kept across evaluation batches while the parameters are unchanged (:mod:`.cache`)."""
        return self._eval_cache.get(self, name, compute)

    def clear_cache(self) -> None:
        """Drop the evaluation tables of :meth:`_cached` (they are rebuilt on the next evaluation batch)."""
        self._eval_cache.clear()

    def _all_cores(self) -> dict[str, torch.Tensor] | None:
        """Every relation id's contracted Tucker core per score key, ``[2R, d, d]``, to reuse across
        evaluation batches; None when one key's table would exceed :data:`CACHED_CORES_MAX_ELEMENTS`."""
        ids = torch.arange(2 * self.num_relations, device=self.relation_embeddings[self.modality_keys[0]].device)
        if ids.numel() * self.options.dim**2 > CACHED_CORES_MAX_ELEMENTS:
            return None
        rel = self._relation_side(ids)
        return {k: self.scorers[k].contract(rel[k]) for k in self.score_keys}

    def _forward(self, heads: torch.Tensor, relations: torch.Tensor):
        """Scores ``φ_m [B, E]`` per key of ``score_keys`` and the heads' expert outputs (for ExID)."""
        queries, x, h, groups, h_heads = self._queries(heads, relations)
        return self._candidate_scores(queries, x, h, groups), h_heads  # φ_m = q^m · e^m(t, r)

    def _queries(self, heads: torch.Tensor, relations: torch.Tensor):
        """Tucker queries ``q^m`` per score key, the entity tables ``x^m``, ``h^m`` (all E), the batch's
        relation groups and the heads' expert outputs."""
        x = self._cached("inputs", self.modality_inputs)  # x^m_e, all entities
        h = self._cached("experts", lambda: self._experts(x))  # h^m_{e,k}
        h_heads = {k: v[heads] for k, v in h.items()}
        e_heads, _, _ = self._query_side(relations, h_heads, {k: v[heads] for k, v in x.items()}, noise=True)
        groups = RelationGroups.of(relations)
        return self._tucker_queries(e_heads, groups), x, h, groups, h_heads  # q^m

    def _tucker_queries(self, embedded: dict[str, torch.Tensor], groups: RelationGroups) -> dict[str, torch.Tensor]:
        """``q^m = BN(e^m_h (W_m ×₁ r^m)) [B, dim]`` per score key; the cores contracted once per
        distinct relation (or all of them once per evaluation, when kept)."""
        cores = self._cached("cores", self._all_cores) if self._eval_cache.active(self) else None
        if cores is not None:
            return {k: self.scorers[k](embedded[k], None, groups, cores[k][groups.relations])
                    for k in self.score_keys}
        rel = self._relation_side(groups.relations)
        return {k: self.scorers[k](embedded[k], rel[k], groups) for k in self.score_keys}

    def _candidate_logits(self, inputs) -> dict[str, torch.Tensor]:
        """Every entity's gate logits ``[E, K]`` per modality, as candidates (gate noise as configured)."""
        noisy = self.options.candidate_gate_noise
        return self._cached("logits", lambda: {
            k: self.experts[k].gate_logits(inputs[k], noise=noisy) for k in self.modality_keys})

    def _candidate_scores(self, queries, inputs, experts, groups: RelationGroups) -> dict[str, torch.Tensor]:
        """``φ_m = q^m · e^m(t, r)`` ``[B, E]`` for every candidate t, per score key."""
        logits = self._candidate_logits(inputs)
        tau = self.temperature(groups.relations)
        if not self.options.candidate_relation_guidance or tau is None:  # τ = 1: one encoding per step
            candidates = self._cached("candidates", lambda: self._candidates(experts, logits))
            return {k: queries[k] @ candidates[k].T for k in self.score_keys}
        gate_all = guided.group_gates(logits, tau)
        scores = guided.modality_scores(queries, experts, gate_all, groups)
        tables = self._cached("fusion_tables", lambda: guided.fusion_tables(self.entity_fusion, experts))
        recompute = self.options.recompute_candidates and torch.is_grad_enabled() and self.training
        scores[JOINT] = guided.joint_scores(queries[JOINT], tables, gate_all, groups, self.entity_fusion,
                                            recompute=recompute)
        return scores

    def _candidates(self, experts, logits) -> dict[str, torch.Tensor]:
        """All E candidates encoded with τ = 1: ``[E, dim]`` per score key."""
        out = {k: mix(gates(logits[k], None), experts[k]) for k in self.modality_keys}
        out[JOINT], _ = self.entity_fusion(out)
        return out

    # ------------------------------------------------------------------------------- interface
    def _combine(self, scores: dict[str, torch.Tensor]) -> torch.Tensor:
        keys = self.score_keys if self.options.joint_training else [JOINT]
        if self.options.joint_score == "sum":
            return sum(scores[k] for k in keys)
        return sum(torch.sigmoid(scores[k]) for k in keys) / len(keys)  # no [S, B, E] stack

    def scores(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
        """Scores ``[B, E]``: one per enabled modality ("s", "v", "t"), "j", and the ranking score "joint"."""
        scores, _ = self._forward(heads, relations)
        scores["joint"] = self._combine(scores)
        return scores

    def ranking_scores(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        """The ranking score "joint" alone (per-epoch validation), ``scores()["joint"]`` with less work:
        only the scores it combines (``joint_training: false``: j alone, not the modalities'), each
        added into one ``[B, E]`` matrix as it is computed (``sum``: ``addmm_``, the product accumulating
        into it; ``mean_sigmoid``: ``sigmoid_``/``add_`` in place, in the same order as :meth:`_combine`)
        instead of one matrix per key and their sum. Equal to ``scores()["joint"]`` up to float rounding
        (``mean_sigmoid``: bit for bit); ``tests/test_model_momok.py`` checks scores and ranks. In training
        mode or with autograd on it is ``scores()["joint"]``."""
        if self.training or torch.is_grad_enabled():
            return super().ranking_scores(heads, relations)
        queries, x, h, groups, _ = self._queries(heads, relations)
        keys = self.score_keys if self.options.joint_training else [JOINT]
        total = None
        logits = self._candidate_logits(x)
        tau = self.temperature(groups.relations)
        if not self.options.candidate_relation_guidance or tau is None:
            candidates = self._cached("candidates", lambda: self._candidates(h, logits))
            for k in keys:
                total = self._accumulate(total, queries[k], candidates[k])
        else:
            gate_all = guided.group_gates(logits, tau)
            mods = [k for k in keys if k != JOINT]

            def group_scores(u, *group_queries):
                part = None
                for k, q in zip(mods, group_queries):
                    part = self._accumulate(part, q, mix(gate_all[k][u], h[k]))
                return part

            if mods:
                total = groups.map_groups(group_scores, *(queries[k] for k in mods))
            if JOINT in keys:
                tables = self._cached("fusion_tables", lambda: guided.fusion_tables(self.entity_fusion, h))
                joint = guided.joint_scores(queries[JOINT], tables, gate_all, groups, self.entity_fusion,
                                            recompute=False)
                total = self._accumulate(total, scores=joint)
        return total if self.options.joint_score == "sum" else total.div_(len(keys))

    def _accumulate(self, total: torch.Tensor | None, query: torch.Tensor | None = None,
                    candidates: torch.Tensor | None = None, scores: torch.Tensor | None = None) -> torch.Tensor:
        """``total`` plus one key's term of the ranking score: its scores ``query @ candidates.T`` (or
        ``scores`` given), through a sigmoid for ``mean_sigmoid``; in place on ``total`` (None: the first)."""
        summed = self.options.joint_score == "sum"
        if scores is None:
            if total is not None and summed:
                return total.addmm_(query, candidates.T)
            scores = query @ candidates.T
        if not summed:
            scores = scores.sigmoid_()
        return scores if total is None else total.add_(scores)

    def needs_labels(self) -> bool:
        return self.options.loss == "bce"

    def loss(self, batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        """``Σ_m L_m + λ Σ_m L_ExID^m``; parts logged as ``loss_<key>`` and ``exid``."""
        scores, head_experts = self._forward(batch.heads, batch.relations)
        trained = self.score_keys if self.options.joint_training else [JOINT]
        if self.options.loss == "bce":
            if batch.labels is None:
                raise ValueError("model.loss 'bce' needs TrainBatch.labels (needs_labels() is True)")
            labels = batch.labels.bool().nonzero(as_tuple=True)  # shared by the scores' losses
        parts, total = {}, 0.0
        for k in trained:
            if self.options.loss == "softmax_ce":
                part = F.cross_entropy(scores[k], batch.tails)
            else:
                part = smoothed_bce(scores[k], labels, self.options.label_smoothing)
            parts[f"loss_{k}"] = float(part.detach())
            total = total + part
        if len(self.estimators):
            exid = self.exid_bound(head_experts)
            parts["exid"] = float(exid.detach())
            total = total + self.options.exid_weight * exid
        return total, parts

    def _draw_pairs(self) -> torch.Tensor | None:
        """Estimator indices used this step: None = all pairs; else one random pair (model generator)."""
        if self.options.club_pairs == "all":
            return None
        return torch.randint(0, self.expert_pairs.shape[0], (1,), generator=self.rng)

    def _pair_inputs(self, head_experts: torch.Tensor, pairs: torch.Tensor | None):
        """``(h_i, h_j)`` stacked per ordered pair: ``[P', B, dim]`` each."""
        chosen = self.expert_pairs if pairs is None else self.expert_pairs[pairs.to(self.expert_pairs.device)]
        x = head_experts[:, chosen[:, 0]].transpose(0, 1)
        y = head_experts[:, chosen[:, 1]].transpose(0, 1)
        return x, y

    def exid_bound(self, head_experts: dict[str, torch.Tensor]) -> torch.Tensor:
        """``Σ_m`` (mean over the chosen pairs of) the CLUB bound on the batch's expert outputs ``[B, K, dim]``."""
        total = 0.0
        pairs = self._draw_pairs()
        for k, estimator in self.estimators.items():
            h = head_experts[k]
            permutation = torch.randperm(h.shape[0], generator=self.rng).to(h.device)
            x, y = self._pair_inputs(h, pairs)
            index = None if pairs is None else pairs.to(h.device)
            total = total + estimator.upper_bound(x, y, permutation, index).mean()
        return total

    def estimator_parameters(self) -> list[nn.Parameter]:
        return list(self.estimators.parameters())

    def estimator_loss(self, batch: TrainBatch) -> torch.Tensor | None:
        """``Σ_m`` mean over the chosen pairs of q_θ's negative log-likelihood on detached expert outputs."""
        if not len(self.estimators):
            return None
        with torch.no_grad():
            head_experts = self._experts(self.modality_inputs(batch.heads))
        pairs = self._draw_pairs()
        total = 0.0
        for k, estimator in self.estimators.items():
            x, y = self._pair_inputs(head_experts[k], pairs)
            index = None if pairs is None else pairs.to(x.device)
            total = total + estimator.learning_loss(x, y, index, logvar_term=self.options.club_logvar_term).mean()
        return total

    @torch.no_grad()
    def diagnostics(self, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, Any]:
        """``alpha`` ``[B, M]`` (columns in ``modality_keys`` order) and ``gates`` ``{key: [B, K]}`` of each
        query's head entity under the query's relation, without gate noise."""
        inputs = self.modality_inputs(heads)
        experts = self._experts(inputs)
        _, gate_values, alpha = self._query_side(relations, experts, inputs, noise=False)
        return {"alpha": alpha, "gates": gate_values}


@register("momok", MoMoKOptions)
def build(options: MoMoKOptions, context: BuildContext) -> MoMoK:
    """MoMoK for ``context``'s entities, relations and feature tables, initialised from ``context.generator``."""
    return MoMoK(options, context.num_entities, context.num_relations, context.features, context.generator)


__all__ = ["MoMoK", "MoMoKOptions", "build", "validate_options"]
