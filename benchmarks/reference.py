"""A deliberately straightforward MoMoK: the same function as :class:`momok.models.momok.MoMoK`, written
the obvious way, for the benchmarks' side-by-side timings and the agreement tests (tests/test_fast_path.py).

It reads the parameters of a ``MoMoK`` instance and recomputes its forward pass query by query where the
fast path groups or factorises:

* Tucker: the core is contracted with every QUERY's relation embedding, ``einsum('bi,ijk->bjk')``, a
  materialised ``[B, d, d]`` stack per score key (the fast path contracts once per distinct relation);
  the hidden dropout is one ``F.dropout`` over that whole stack (TuckER's code). The relation-side
  fusion is also done per query.
* Candidates (relation guidance on): for each distinct relation of the batch, the mixtures of all E
  entities are computed under that relation's temperature and pushed through the joint fusion in full
  (two-layer MLP ``P_m`` per modality, then attention), then that relation's queries are scored with
  ``q @ C^T``. Encoding candidates per query instead would cost ``B/U`` times more (about 20x on
  MKG-Y) and does not fit a benchmark. Like the fast path, each relation's candidate encoding is
  recomputed in the backward pass (``torch.utils.checkpoint``) so that the reference fits in memory.
* ExID: a Python loop over expert pairs; estimator loss likewise.
* Ranking (:func:`reference_ranks`): a Python loop over queries, filtering with Python sets.

Random draws happen in the same order as in the fast path (gate noise s, v, t; per score key input
dropout, core dropout, output dropout; candidate gate noise; then the model's own generator for ExID),
so with ``hidden_dropout1 = 0`` (or in eval mode) the two give the same numbers for the same seed. With
``hidden_dropout1 > 0`` both draw an independent Bernoulli mask per query and core entry, but not the
same masks (the fast path draws them in chunks), so agreement is checked with that one dropout off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from momok.models.base import TrainBatch
from momok.modalities import JOINT
from momok.models.momok import MoMoK


def _inputs(model: MoMoK) -> dict[str, torch.Tensor]:
    out = {}
    for k in model.modality_keys:
        if k == "s":
            out[k] = model.structure
            continue
        x = model.feature_projections[k](getattr(model, f"raw_{k}"))
        out[k] = torch.where(getattr(model, f"mask_{k}").unsqueeze(1), x, model.placeholders[k])
    return out


def _fuse(fusion, vectors: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ_m α_m P_m(x_m)`` with the projections applied in full."""
    projected = torch.stack([fusion.projections[k](vectors[k]) for k in fusion.keys], dim=1)
    logits = projected @ fusion.attention
    alpha = torch.softmax(logits, -1) if fusion.adaptive else torch.full_like(logits, 1.0 / logits.shape[-1])
    return (alpha.unsqueeze(-1) * projected).sum(1)


def _gate_logits(experts, x: torch.Tensor, noise: bool, training: bool) -> torch.Tensor:
    logits = x @ experts.gate_weight
    if noise and experts.gate_noise and training:
        logits = logits + torch.randn_like(logits) * F.softplus(x @ experts.noise_weight)
    return logits


def _mix(logits: torch.Tensor, tau: torch.Tensor | None, expert_outputs: torch.Tensor) -> torch.Tensor:
    g = torch.softmax(logits if tau is None else logits / tau.unsqueeze(-1), -1)
    return (g.unsqueeze(-1) * expert_outputs).sum(-2)


def _tucker(scorer, heads: torch.Tensor, relations: torch.Tensor, training: bool) -> torch.Tensor:
    """TuckER's query vector, one ``d × d`` core ``W ×₁ r_b`` materialised per query."""
    x = F.dropout(scorer.bn0(heads), scorer.input_dropout, training)
    cores = torch.einsum("bi,ijk->bjk", relations, scorer.core)
    cores = F.dropout(cores, scorer.hidden_dropout1, training)
    hidden = torch.einsum("bj,bjk->bk", x, cores)
    return F.dropout(scorer.bn1(hidden), scorer.hidden_dropout2, training)


def reference_scores(model: MoMoK, heads: torch.Tensor, relations: torch.Tensor):
    """Scores ``{key: [B, E]}`` for keys s/v/t (enabled), j, and the heads' expert outputs ``[B, K, d]``."""
    o, training = model.options, model.training
    inputs = _inputs(model)
    experts = {k: model.experts[k].experts(inputs[k]) for k in model.modality_keys}
    tau_q = model.temperature(relations)
    # query side, per query
    embedded = {}
    for k in model.modality_keys:
        logits = _gate_logits(model.experts[k], inputs[k][heads], True, training)
        embedded[k] = _mix(logits, tau_q, experts[k][heads])
    embedded[JOINT] = _fuse(model.entity_fusion, embedded)
    rel = {k: model.relation_embeddings[k][relations] for k in model.modality_keys}
    rel[JOINT] = _fuse(model.relation_fusion, rel)
    queries = {k: _tucker(model.scorers[k], embedded[k], rel[k], training) for k in model.score_keys}
    # candidate side
    logits = {
        k: _gate_logits(model.experts[k], inputs[k], o.candidate_gate_noise, training) for k in model.modality_keys
    }

    def candidates(tau):
        out = {k: _mix(logits[k], tau, experts[k]) for k in model.modality_keys}
        out[JOINT] = _fuse(model.entity_fusion, out)
        return out

    if o.candidate_relation_guidance and model.temperature.theta is not None:
        scores = {k: torch.zeros(heads.shape[0], model.num_entities, device=heads.device) for k in model.score_keys}
        for r in torch.unique(relations).tolist():
            rows = (relations == r).nonzero().flatten()
            tau_r = model.temperature(torch.tensor([r], device=heads.device))

            def score_relation(tau_r, *qs):
                c = candidates(tau_r)
                return torch.stack([q @ c[k].T for k, q in zip(model.score_keys, qs)])

            group = [queries[k][rows] for k in model.score_keys]
            if torch.is_grad_enabled() and training:
                stacked = checkpoint(score_relation, tau_r, *group, use_reentrant=False, preserve_rng_state=False)
            else:
                stacked = score_relation(tau_r, *group)
            for i, k in enumerate(model.score_keys):
                scores[k] = scores[k].index_put((rows,), stacked[i])
    else:
        c = candidates(None)
        scores = {k: queries[k] @ c[k].T for k in model.score_keys}
    return scores, {k: experts[k][heads] for k in model.modality_keys}


def _combine(model: MoMoK, scores: dict[str, torch.Tensor]) -> torch.Tensor:
    keys = model.score_keys if model.options.joint_training else [JOINT]
    if model.options.joint_score == "sum":
        return sum(scores[k] for k in keys)
    return torch.stack([torch.sigmoid(scores[k]) for k in keys]).mean(0)


def reference_joint_scores(model: MoMoK, heads: torch.Tensor, relations: torch.Tensor) -> dict[str, torch.Tensor]:
    """As ``model.scores``: per-key scores plus "joint"."""
    scores, _ = reference_scores(model, heads, relations)
    scores["joint"] = _combine(model, scores)
    return scores


def _club_ll(estimator, p: int, x: torch.Tensor, y: torch.Tensor, detach: bool, logvar_term: bool) -> torch.Tensor:
    """``log q_p(y | x)`` per row, the estimator's MLPs written out."""
    w = [getattr(estimator, n)[p] for n in ("mu_w1", "mu_b1", "mu_w2", "mu_b2", "lv_w1", "lv_b1", "lv_w2", "lv_b2")]
    if detach:
        w = [t.detach() for t in w]
    mu = torch.relu(x @ w[0] + w[1]) @ w[2] + w[3]
    logvar = torch.tanh(torch.relu(x @ w[4] + w[5]) @ w[6] + w[7])
    ll = -(y - mu).square() / (2 * logvar.exp())
    if logvar_term:
        ll = ll - logvar / 2
    return ll.sum(-1)


def _chosen_pairs(model: MoMoK) -> list[int]:
    if model.options.club_pairs == "all":
        return list(range(model.expert_pairs.shape[0]))
    return [int(torch.randint(0, model.expert_pairs.shape[0], (1,), generator=model.rng))]


def reference_loss(model: MoMoK, batch: TrainBatch) -> torch.Tensor:
    """``model.loss(batch)[0]`` computed by the reference."""
    o = model.options
    scores, head_experts = reference_scores(model, batch.heads, batch.relations)
    trained = model.score_keys if o.joint_training else [JOINT]
    total = 0.0
    for k in trained:
        if o.loss == "softmax_ce":
            total = total + F.cross_entropy(scores[k], batch.tails)
        else:
            target = (1.0 - o.label_smoothing) * batch.labels.float() + 1.0 / model.num_entities
            total = total + F.binary_cross_entropy_with_logits(scores[k], target)
    if len(model.estimators):
        pairs = _chosen_pairs(model)
        exid = 0.0
        for k, estimator in model.estimators.items():
            h = head_experts[k]
            permutation = torch.randperm(h.shape[0], generator=model.rng).to(h.device)
            values = []
            for p in pairs:
                i, j = model.expert_pairs[p].tolist()
                positive = _club_ll(estimator, p, h[:, i], h[:, j], True, False)
                negative = _club_ll(estimator, p, h[:, i], h[permutation, j], True, False)
                values.append((positive - negative).mean())
            exid = exid + torch.stack(values).mean()
        total = total + o.exid_weight * exid
    return total


def reference_estimator_loss(model: MoMoK, batch: TrainBatch) -> torch.Tensor | None:
    """``model.estimator_loss(batch)`` computed by the reference."""
    if not len(model.estimators):
        return None
    with torch.no_grad():
        inputs = _inputs(model)
        head_experts = {k: model.experts[k].experts(inputs[k][batch.heads]) for k in model.estimators}
    pairs = _chosen_pairs(model)
    total = 0.0
    for k, estimator in model.estimators.items():
        values = []
        for p in pairs:
            i, j = model.expert_pairs[p].tolist()
            h = head_experts[k]
            values.append(-_club_ll(estimator, p, h[:, i], h[:, j], False, model.options.club_logvar_term).mean())
        total = total + torch.stack(values).mean()
    return total


def reference_ranks(scores: torch.Tensor, entities, relations, targets, known: dict[tuple[int, int], set]):
    """Filtered realistic ranks, one query at a time: ``known[(entity, relation)]`` is a Python set of
    answers (inverse relations included). Returns a float tensor ``[B]``."""
    ranks = []
    for b in range(scores.shape[0]):
        row = scores[b]
        target = int(targets[b])
        filtered = [e for e in known.get((int(entities[b]), int(relations[b])), ()) if e != target]
        keep = torch.ones(row.shape[0], dtype=torch.bool, device=row.device)
        if filtered:
            keep[torch.tensor(filtered, device=row.device)] = False
        target_score = row[target]
        better = int(((row > target_score) & keep).sum())
        better_or_equal = int(((row >= target_score) & keep).sum())
        ranks.append(0.5 * ((better + 1) + better_or_equal))
    return torch.tensor(ranks)


def known_answers(triples: torch.Tensor, num_relations: int) -> dict[tuple[int, int], set]:
    """``{(entity, relation): set(answers)}`` of ``(h, r, t)`` triples, inverse queries ``(t, r + R)`` included."""
    known: dict[tuple[int, int], set] = {}
    for h, r, t in triples.tolist():
        known.setdefault((h, r), set()).add(t)
        known.setdefault((t, r + num_relations), set()).add(h)
    return known
