"""The L2-SP penalty (Li, Grandvalet, Davoine, ICML 2018).

    Omega(w) = alpha/2 * sum_{w in S} ||w - w0||^2  +  beta/2 * sum_{w in head} ||w||^2

S are the parameters that came from the pretrained model, w0 their starting values (a
detached copy, no second model), the head is the new classifier. Convention: sums over
elements (not means) and the 1/2 factor, as in the paper, so the gradient is
alpha * (w - w0) and beta * w.
"""
from __future__ import annotations

import torch


class L2SPPenalty:
    """Callable penalty: ``loss = task_loss + penalty()``.

    Example:
        >>> w = torch.nn.Parameter(torch.ones(3)); h = torch.nn.Parameter(torch.ones(2))
        >>> pen = L2SPPenalty([("w", w)], [("h", h)], alpha=0.1, beta=0.01)
        >>> round(pen().item(), 6)  # w == w0, so only beta/2 * ||h||^2 = 0.005 * 2
        0.01
    """

    def __init__(self, sp_params: list, head_params: list, alpha: float, beta: float):
        self.alpha, self.beta = float(alpha), float(beta)
        self.sp_names = [n for n, _ in sp_params]
        self.sp = [p for _, p in sp_params]
        self.head = [p for _, p in head_params]
        self.ref = [p.detach().clone() for p in self.sp]  # w0

    @classmethod
    def for_backbone(cls, bb, alpha: float, beta: float, include_bn_bias: bool = False) -> "L2SPPenalty":
        """Cover ``bb``'s pretrained parameters (kernels only unless ``include_bn_bias``) and its head."""
        block_of = bb.block_of()
        keep = (lambda p: True) if include_bn_bias else (lambda p: p.ndim > 1)  # authors' code: kernels only
        named = list(bb.model.named_parameters())
        sp = [(n, p) for n, p in named if block_of[n] != "head" and keep(p)]
        head = [(n, p) for n, p in named if block_of[n] == "head" and keep(p)]
        return cls(sp, head, alpha, beta)

    def covered(self) -> set:
        """Ids of every parameter the penalty acts on (the optimiser must not decay them)."""
        return {id(p) for p in self.sp + self.head}

    def __call__(self) -> torch.Tensor:
        zero = (self.sp + self.head)[0].new_zeros(())
        sp = torch.stack([(p - r).pow(2).sum() for p, r in zip(self.sp, self.ref)]).sum() if self.sp else zero
        head = torch.stack([p.pow(2).sum() for p in self.head]).sum() if self.head else zero
        return 0.5 * self.alpha * sp + 0.5 * self.beta * head
