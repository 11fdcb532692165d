"""MMRNS: relation-enhanced negative sampling (Xu, Xu, Wu, Zhou and Chen, "Relation-enhanced Negative
Sampling for Multimodal Knowledge Graph Completion", ACM MM 2022) as a :class:`NegativeSampler`.

A learned sampler around any negative-sampling base scorer (``model.sampler: {name: mmrns}`` on
``transe``, ``rotate``, ``tbkgc``, ...). The paper's parts (its Section 3: knowledge-guided cross-modal
attention (KCA), the contrastive semantic sampler, masked Gumbel-softmax optimisation) are written
here as the official code computes them (quqxui/MMRNS ``KCA_model.py``, ``run_gumbel.py``,
``dataloader.py``, read for facts only; the paper's own text was not available offline, so no equation
numbers are cited). For a query ``(h, r)`` with answer ``a`` and a pool ``P`` of ``C`` candidates drawn
uniformly once per batch:

**Channels (KCA).** Per feature modality ``m`` (image, text; those with a feature file), with ``f_m(e)``
the entity's feature row (zero where it lacks ``m``, as the official loader's zero rows) and ``ρ_r ∈ R^k``
a relation vector::

    x_m(e)     = LeakyReLU_0.1(W_m f_m(e) + b_m) ∈ R^k
    c(e)       = x_image(e) · x_text(e)                     (cross-modal affinity; 1 with one modality)
    z_m(e | r) = Q_m( LN(σ(U_m ρ_r) ⊙ c(e) x_m(e)) + LN(x_m(e)) )

and the structural channel over the base model's structure row ``s_e`` (:meth:`KGEModel.structure_rows`)::

    z_s(e | r) = s_e ⊙ σ(W_3 LeakyReLU_0.1(W_1 [s_e ; ρ_r]))

**Contrastive semantic sampler.** ``sim_c(e) = z_c(e|r)·z_c(a|r) / sg(‖z_c(e|r)‖ ‖z_c(a|r)‖)`` (cosine with a
detached denominator, as the official code) for each channel ``c``; the sampling distribution over the
pool is ``p(e) = Σ_c softmax_{e ∈ P}(sim_c(e) / τ)`` with the annealed temperature
``τ = τ₀ / (1 + ln(t + 1))`` at training step ``t`` (a buffer, so it is checkpointed).

**Masked Gumbel-softmax.** Logits ``ℓ(e) = log p(e) + M·[e is a known training answer of (h, r)]``
(``M = -10⁴``; the official code adds ``log 1e-38``): each of the ``n`` negatives is
``y = softmax(ℓ + g)`` with Gumbel(0, 1) noise ``g``, taken hard (the one-hot of its argmax) with the
straight-through gradient of ``y``, and its entity's logit then gets ``M`` (no repeats). The model scores
the mixture ``onehot @ rows(P)``, so its loss reaches the sampler's parameters (``Negatives.mixing``).

**Contrastive loss.** With weights ``w(e) = 1/C``, times the loss's (self-adversarial, detached) weight of
the negative for the drawn ones, per channel
``L_c = -log( Σ_{queries, e known} w e^{sim_c(e)} / Σ_{queries, e not known} w e^{sim_c(e)} )`` (sums over
the whole batch, as the official code), and the sampler adds ``Σ_c L_c / (|channels| · loss_rate)`` to
the model's loss (official: the three channels over ``3 · loss_rate``).

Official settings (README example, TransE on DB15K): d = 200, γ = 6, α = 0.5, 20 negatives, batch 400,
lr 1e-4 for the scorer and for the sampler (``--kca_lr``), pool 1500, loss_rate 100, τ₀ = 10, 100k steps.
Its scorers are RotatE's code base (``γ - ‖h + r - t‖_1`` for TransE, self-adversarial
negative-sampling loss), i.e. here ``loss: nssa, p: 1, normalize_entities: false``.

Simplified or changed, plainly:

* Features: one vector per entity and modality (the feature files) instead of the official 24 BEiT
  image-patch tokens and 4 sentence vectors. The cross-modal token attention of one token is the
  identity, and the official relation gate, one scalar per (image token, text token) pair, would be a
  single scalar that the LayerNorm cancels; so the gate here is per coordinate, ``σ(U_m ρ_r) ∈ (0,1)^k``.
  One LayerNorm is shared by the modalities (as the official ``self.layernorm``).
* ``ρ_r`` is the sampler's own relation vector (width ``attention_dim``), not the base model's relation
  embedding, whose form differs between the scorers here (vectors, phases, pairs).
* Only the answers of inverse-augmented tail queries are corrupted (as for every model here), and there
  are no word2vec-style subsampling weights; known answers are those of the training split.
* A batch whose pool holds no known answer of any query adds no contrastive loss (the official
  ``-log 0``).
* Channels whose feature file is absent (``features.allow_missing``) are left out; with none, only the
  structural channel remains (the structure-only variant).
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from momok.models.init import uniform, uniform_linear
from momok.models.sampling import Negatives, NegativeSampler, SamplerOptions

#: logit offset of masked candidates (known answers, entities already drawn)
MASKED = -1.0e4


def gumbel_draws(logits: torch.Tensor, num: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` draws without replacement from ``softmax(logits)`` per row (``logits [B, C]``), by the
    Gumbel-max trick with straight-through weights.

    Returns ``(weights [B, num, C], index [B, num])``: the weights are one-hot in value (at ``index``)
    with the gradient of the soft sample ``softmax(logits + g)``; each draw adds :data:`MASKED` to the
    logit of the entity it took before the next one.
    """
    weights, index = [], []
    tiny = torch.finfo(logits.dtype).tiny
    for _ in range(num):
        u = torch.rand(logits.shape, device=logits.device, generator=generator).clamp_min(tiny)
        soft = torch.softmax(logits - torch.log(-torch.log(u)), dim=-1)
        chosen = soft.argmax(dim=-1)
        hard = F.one_hot(chosen, logits.shape[-1]).to(soft.dtype)
        weights.append(hard + soft - soft.detach())
        index.append(chosen)
        logits = logits + MASKED * hard
    return torch.stack(weights, dim=1), torch.stack(index, dim=1)


class MMRNSSampler(NegativeSampler):
    """Relation-aware learned negatives (module docstring); reads the model's structure rows."""

    needs_labels = True

    def __init__(self, options: SamplerOptions, num_entities: int, num_relations: int, structure_width: int,
                 features: dict, generator: torch.Generator | None = None):
        super().__init__()
        if structure_width < 1 or num_relations < 1:
            raise ValueError("mmrns needs the model's structure width and the number of relations")
        self.options = options
        self.num_entities = num_entities
        k = options.attention_dim
        self.modalities = [m for m in options.modalities if features.get(m) is not None]
        self.inputs = nn.ModuleDict()  # W_m
        self.gates = nn.ModuleDict()  # U_m
        self.outputs = nn.ModuleDict()  # Q_m
        for m in self.modalities:
            table = features[m]
            rows = table.features.detach().float() * table.mask.detach().float().unsqueeze(1)
            self.register_buffer(f"rows_{m}", rows, persistent=False)
            self.inputs[m] = uniform_linear(rows.shape[1], k, generator)
            self.gates[m] = uniform_linear(k, k, generator)
            self.outputs[m] = uniform_linear(k, k, generator)
        self.norm = nn.LayerNorm(k)
        self.relation = nn.Parameter(uniform((2 * num_relations, k), math.sqrt(6.0 / (2 * num_relations + k)),
                                             generator))
        self.structure_hidden = uniform_linear(structure_width + k, options.hidden_dim, generator)  # W_1
        self.structure_gate = uniform_linear(options.hidden_dim, structure_width, generator)  # W_3
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    # -- channels
    def channels(self, entities: torch.Tensor, relations: torch.Tensor, model) -> dict[str, torch.Tensor]:
        """``z_c(entities | relations)`` per channel (``image``, ``text``, ``structure``): ``entities`` and
        ``relations`` are id tensors that broadcast against each other (``[..., 1]`` against ``[1, C]``)."""
        rho = self.relation[relations]
        x = {m: F.leaky_relu(self.inputs[m](getattr(self, f"rows_{m}")[entities]), 0.1) for m in self.modalities}
        cross = (x["image"] * x["text"]).sum(-1, keepdim=True) if len(x) == 2 else 1.0
        out = {}
        for m, xm in x.items():
            guided = torch.sigmoid(self.gates[m](rho)) * (cross * xm)
            out[m] = self.outputs[m](self.norm(guided) + self.norm(xm))
        structure = model.structure_rows(entities)
        shape = torch.broadcast_shapes(structure.shape[:-1], rho.shape[:-1])
        joint = torch.cat([structure.expand(*shape, -1), rho.expand(*shape, -1)], dim=-1)
        gate = torch.sigmoid(self.structure_gate(F.leaky_relu(self.structure_hidden(joint), 0.1)))
        out["structure"] = structure * gate
        return out

    def similarities(self, relations: torch.Tensor, answers: torch.Tensor, pool: torch.Tensor, model
                     ) -> dict[str, torch.Tensor]:
        """``sim_c [B, C]``: each pool entity's channel vector against the answer's, under the query's relation
        (the pool's vectors are computed once per distinct relation of the batch)."""
        distinct, inverse = torch.unique(relations, return_inverse=True)
        pool_vectors = self.channels(pool.unsqueeze(0), distinct.unsqueeze(1), model)  # [R_b, C, w]
        answer_vectors = self.channels(answers, relations, model)  # [B, w]
        order = torch.argsort(inverse, stable=True)
        counts = torch.bincount(inverse, minlength=len(distinct)).tolist()
        out = {}
        for c, z in pool_vectors.items():
            q = answer_vectors[c]
            dots = torch.cat([q[rows] @ z[j].T for j, rows in enumerate(order.split(counts)) if len(rows)])
            dots = dots[torch.argsort(order)]  # back to query order
            norms = z.norm(dim=-1)[inverse] * q.norm(dim=-1, keepdim=True)
            out[c] = dots / (norms.detach() + 1e-10)
        return out

    def temperature(self) -> float:
        """τ = τ₀ / (1 + ln(t + 1)) at the current training step t."""
        return self.options.exploration_temperature / (1.0 + math.log(int(self.steps) + 1))

    def logits(self, similarities: dict[str, torch.Tensor], known: torch.Tensor) -> torch.Tensor:
        """``log Σ_c softmax(sim_c / τ) + M·known`` over the pool, ``[B, C]``."""
        tau = self.temperature()
        p = sum(torch.softmax(s / tau, dim=-1) for s in similarities.values())
        return p.log() + MASKED * known.to(p.dtype)

    # -- the draw
    def sample(self, heads, relations, answers, num_negatives, generator=None, model=None, labels=None):
        if model is None or labels is None:
            raise ValueError("the mmrns sampler needs the model and the batch's labels")
        size = min(self.options.pool_size, self.num_entities)
        pool = torch.randperm(self.num_entities, device=answers.device, generator=generator)[:size]
        known = labels[:, pool]
        similarities = self.similarities(relations, answers, pool, model)
        mixing, index = gumbel_draws(self.logits(similarities, known), num_negatives, generator)
        if self.training:
            self.steps += 1
        loss = partial(self.contrastive_loss, similarities, known, index)
        return Negatives(pool[index], mixing=mixing, pool=pool, loss=loss)

    def contrastive_loss(self, similarities: dict[str, torch.Tensor], known: torch.Tensor, index: torch.Tensor,
                         weights: torch.Tensor) -> torch.Tensor:
        """``Σ_c L_c / (|channels| · loss_rate)`` (module docstring); ``weights [B, n]``: the loss's detached
        weights of the drawn negatives ``index``."""
        first = next(iter(similarities.values()))
        if not known.any():
            return first.new_zeros(())
        w = torch.full_like(first, 1.0 / first.shape[-1])
        w = w.scatter(1, index, w.gather(1, index) * weights.to(w.dtype))
        terms = []
        for s in similarities.values():
            e = torch.exp(s) * w
            terms.append(-torch.log(e[known].sum() / e[~known].sum()))
        return sum(terms) / (len(terms) * self.options.loss_rate)
