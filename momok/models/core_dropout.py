"""TuckER's exact per-query hidden dropout on relation cores, without a float ``[B, d, d]`` stack.

TuckER drops entries of each query's own copy of the contracted core ``W_r = W ×₁ r``: query b computes
``hidden_b = x_b (W_{r_b} ⊙ M_b) · s`` with an independent keep mask ``M_b ∈ {0, 1}^{d×d}`` and the
inverted-dropout scale s. Written the obvious way (gather ``W_r`` per query, ``F.dropout`` over the
``[B, d, d]`` stack, ``bmm``) a CPU step spends most of its time drawing ``B·d²`` random floats and
moving ``[B, d, d]`` float tensors through memory (about 12 passes of 368 MB per score at B = 1024,
d = 300). Here the same function costs one random integer and one byte per mask entry:

* :func:`keep_mask` draws the mask as ``bool [B, d, d]``: entry kept iff a uniform 32-bit integer
  ``u ≥ t`` with ``t = round(p·2³²)``. The drop probability is ``t/2³²`` (p to within 2⁻³³, finer than
  ``torch.rand``'s 2⁻²⁴ grid) and ``s = 2³²/(2³² − t)``, so ``E[M·s] = 1`` exactly. On a CPU the bits come
  from NumPy's SFC64 generator, lazily: one random byte per entry (the high byte of u), and the low 24
  bits only where that byte ties with ``t``'s (1 entry in 256), which is the same distribution with a
  quarter of the bits (much faster than ``torch.rand``; ``benchmarks/README.md``). Chunks of ``2²²``
  entries have their own streams and are drawn by ``torch.get_num_threads()`` threads, so the result
  does not depend on the thread count; the seed is drawn from torch's global generator, so
  ``torch.manual_seed`` fixes the masks as it fixes ``F.dropout``'s. On other devices the integers come
  from ``torch`` on that device.
* :class:`MaskedGroupedMatmul` computes ``hidden`` for queries sorted by relation group (each group
  shares one ``W_u``) in chunks of at most ``chunk_elements`` mask entries within one group, so that a
  chunk's masked core copy ``W_u ⊙ M`` (``[c, d, d]`` floats) stays in the CPU cache. Only the
  bool mask is saved for the backward pass, which rebuilds the masked copies chunk by chunk::

      ∂x_b = s · (W_u ⊙ M_b) ∂hidden_b            ∂W_u = s · Σ_{b ∈ u} M_b ⊙ (x_b ⊗ ∂hidden_b)
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from momok.models.groups import RelationGroups

#: mask entries drawn per NumPy call (bounds the temporary random buffers to a few MiB)
_DRAW_CHUNK = 1 << 22


def keep_threshold(p: float) -> tuple[int, float]:
    """``(t, s)``: keep iff a uniform 32-bit integer ``≥ t``; ``s`` makes the kept entries unbiased."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), not {p}")
    t = round(p * 2**32)
    return t, 2**32 / (2**32 - t)


def keep_mask(shape: tuple[int, ...], p: float, device: torch.device | str = "cpu") -> tuple[torch.Tensor, float]:
    """A ``bool`` keep mask of ``shape`` (each entry kept with probability ``1 − t/2³²``) and its scale."""
    t, scale = keep_threshold(p)
    mask = torch.empty(shape, dtype=torch.bool, device=device)
    seed = int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64))  # torch's global generator
    if mask.device.type != "cpu":
        gen = torch.Generator(mask.device).manual_seed(seed)
        words = torch.empty(shape, dtype=torch.int64, device=mask.device).random_(0, 2**32, generator=gen)
        return torch.ge(words, t, out=mask), scale
    flat = mask.view(-1).numpy()

    def draw(chunk: int) -> None:  # chunk i has its own stream: the mask does not depend on the threads
        start = chunk * _DRAW_CHUNK
        count = min(_DRAW_CHUNK, flat.size - start)
        draw_keep(flat[start : start + count], t, np.random.SFC64(np.random.SeedSequence([seed, chunk])))

    chunks = range(-(-flat.size // _DRAW_CHUNK))
    workers = min(torch.get_num_threads(), len(chunks))
    if workers > 1:  # NumPy releases the GIL while it draws and compares
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, chunks))
    else:
        for chunk in chunks:
            draw(chunk)
    return mask, scale


def draw_keep(out: np.ndarray, t: int, bits: np.random.BitGenerator) -> None:
    """``out[i] = u_i ≥ t`` for independent uniform 32-bit integers ``u_i``, drawing their bits lazily: the
    high byte of every ``u_i`` first (one random byte per entry), the low 24 bits only where the high
    byte equals ``t``'s (1 entry in 256). The same distribution as comparing full 32-bit draws, with
    about a quarter of the random bits."""
    high = bits.random_raw(-(-out.size // 8)).view(np.uint8)[: out.size]
    t_high, t_low = t >> 24, t & 0xFFFFFF
    np.greater(high, t_high, out=out)
    ties = np.flatnonzero(high == t_high)
    if ties.size:
        out[ties] = (bits.random_raw(ties.size) & 0xFFFFFF) >= t_low


def _chunks(counts: list[int], rows_per_chunk: int):
    """``(group, start, stop)`` row ranges in group order, none spanning two groups."""
    start = 0
    for group, count in enumerate(counts):
        for begin in range(start, start + count, rows_per_chunk):
            yield group, begin, min(begin + rows_per_chunk, start + count)
        start += count


class MaskedGroupedMatmul(torch.autograd.Function):
    """``out[b] = s · x[b] @ (cores[g(b)] ⊙ mask[b])`` for rows ``x`` sorted by group (``counts`` rows per
    group, group u uses ``cores[u]``); see the module docstring for the chunking and the backward."""

    @staticmethod
    def forward(ctx, x, cores, mask, scale: float, counts: list[int], chunk_elements: int):
        rows_per_chunk = max(1, chunk_elements // mask[0].numel()) if mask.shape[0] else 1
        out = x.new_empty(x.shape)
        for u, start, stop in _chunks(counts, rows_per_chunk):
            masked = cores[u] * _as_float(mask[start:stop], x.dtype)
            out[start:stop] = torch.bmm(x[start:stop].unsqueeze(1), masked).squeeze(1)
        ctx.save_for_backward(x, cores, mask)
        ctx.scale, ctx.counts, ctx.rows_per_chunk = scale, counts, rows_per_chunk
        return out.mul_(scale)

    @staticmethod
    def backward(ctx, grad_out):
        x, cores, mask = ctx.saved_tensors
        grad_x = x.new_empty(x.shape) if ctx.needs_input_grad[0] else None
        grad_cores = torch.zeros_like(cores) if ctx.needs_input_grad[1] else None
        grad_out = grad_out.contiguous()
        for u, start, stop in _chunks(ctx.counts, ctx.rows_per_chunk):
            m, g = _as_float(mask[start:stop], x.dtype), grad_out[start:stop]
            if grad_x is not None:  # g @ masked^T: [c, 1, d] @ [c, d, d] is much faster than [c, d, d] @ [c, d, 1]
                masked = cores[u] * m
                grad_x[start:stop] = torch.bmm(g.unsqueeze(1), masked.transpose(1, 2)).squeeze(1)
            if grad_cores is not None:
                outer = x[start:stop].unsqueeze(2) * g.unsqueeze(1)
                grad_cores[u] += outer.mul_(m).sum(0)
        if grad_x is not None:
            grad_x.mul_(ctx.scale)
        if grad_cores is not None:
            grad_cores.mul_(ctx.scale)
        return grad_x, grad_cores, None, None, None, None


def _as_float(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """0/1 floats of a bool chunk; through uint8, whose conversion torch vectorises (bool's it does not,
    much slower on a CPU; ``benchmarks/README.md``)."""
    return mask.view(torch.uint8).to(dtype)


def per_query_core_dropout(
    x: torch.Tensor, cores: torch.Tensor, groups: RelationGroups, p: float, chunk_elements: int = 1 << 19
) -> torch.Tensor:
    """``x[b] @ dropout_b(cores[groups.inverse[b]])`` with an independent ``d × d`` mask per query.

    x: ``[B, d]`` in query order; cores: ``[U, d, d]``, row u for group u. The mask is drawn for the
    queries in group order (``groups.order``); the result is in query order.
    """
    mask, scale = keep_mask((x.shape[0], *cores.shape[1:]), p, x.device)
    hidden = MaskedGroupedMatmul.apply(x[groups.order], cores, mask, scale, groups.counts, chunk_elements)
    return hidden[groups.restore]
