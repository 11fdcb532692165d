"""1-N training losses over score matrices ``[B, E]``.

:func:`smoothed_bce` is TuckER's (and MoMoK's authors') binary cross-entropy with label smoothing,
``mean_{b,e} BCE(σ(x_be), t_be)`` with ``t = (1 − ε)·L + 1/E`` for the multi-hot labels L. It equals
``F.binary_cross_entropy_with_logits(x, t)`` (to float rounding) without building the dense target:
since ``BCE(σ(x), t) = softplus(x) − t·x``,

    loss = (Σ softplus(x) − (1 − ε)·Σ_{L} x − (1/E)·Σ x) / (B·E),    ∂loss/∂x = (σ(x) − t) / (B·E),

a few vectorised passes over the scores instead of the dozen of the composite ATen kernel (and no
``[B, E]`` float target).
"""

from __future__ import annotations

import torch


class _SmoothedBCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, label_rows, label_columns, smoothing: float):
        n_entities = scores.shape[-1]
        where = (label_rows, label_columns)
        # softplus(x) = max(x, 0) + log(1 + exp(-|x|)); torch's log1p is not vectorised on a CPU (much slower),
        # and log(1 + a) for a in (0, 1] is within float rounding of it after the sum
        total = torch.relu(scores).sum() + scores.abs().neg_().exp_().add_(1.0).log_().sum()
        total = total - (1.0 - smoothing) * scores[where].sum() - scores.sum() / n_entities
        ctx.save_for_backward(scores, *where)
        ctx.smoothing = smoothing
        return total / scores.numel()

    @staticmethod
    def backward(ctx, grad):
        scores, *where = ctx.saved_tensors
        out = torch.sigmoid(scores).sub_(1.0 / scores.shape[-1])
        out.index_put_(tuple(where), out.new_tensor(-(1.0 - ctx.smoothing)), accumulate=True)
        return out.mul_(grad / scores.numel()), None, None, None


def smoothed_bce(
    scores: torch.Tensor, labels: torch.Tensor | tuple[torch.Tensor, torch.Tensor], smoothing: float
) -> torch.Tensor:
    """Mean BCE of ``sigmoid(scores)`` against ``(1 − smoothing)·labels + 1/E``; labels ``bool [B, E]``
    or their distinct ``(rows, columns)`` index pairs (``labels.nonzero(as_tuple=True)``, to share
    between several score matrices of one batch)."""
    if isinstance(labels, torch.Tensor):
        if labels.dtype != torch.bool or labels.shape != scores.shape:
            raise ValueError(f"labels must be a bool tensor of the scores' shape {tuple(scores.shape)} "
                             "or (rows, columns) index pairs")
        labels = labels.nonzero(as_tuple=True)
    rows, columns = labels
    return _SmoothedBCE.apply(scores, rows, columns, smoothing)
