"""Contrastive losses on embeddings (small nn.Modules, sentence-transformers style)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TripletCosineLoss(nn.Module):
    """max(0, d(a, p) - d(a, n) + margin) with cosine distance d = 1 - cos."""

    def __init__(self, margin: float = 0.5) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        d_pos = 1.0 - F.cosine_similarity(anchor, positive)
        d_neg = 1.0 - F.cosine_similarity(anchor, negative)
        return F.relu(d_pos - d_neg + self.margin).mean()


class InfoNCELoss(nn.Module):
    """InfoNCE over in-batch positives plus each anchor's own hard negative, at temperature tau.

    In-batch candidates that share the anchor's label are masked out (they are not negatives).
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def forward(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        a = F.normalize(anchor, dim=-1)
        p = F.normalize(positive, dim=-1)
        n = F.normalize(negative, dim=-1)
        in_batch = a @ p.T / self.temperature  # (B, B)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        in_batch = in_batch.masked_fill(same & ~eye, float("-inf"))
        hard = (a * n).sum(-1, keepdim=True) / self.temperature  # (B, 1)
        logits = torch.cat([in_batch, hard], dim=1)
        target = torch.arange(len(labels), device=labels.device)
        return F.cross_entropy(logits, target)


def routing_supervision_loss(agent_logits: torch.Tensor, complexity_logits: torch.Tensor, agent: torch.Tensor,
                             complexity: torch.Tensor, complexity_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy on agent type plus `complexity_weight` times cross-entropy on complexity: the joint supervision
    trained through the adapter alongside the contrastive losses (which only see agent type)."""
    return F.cross_entropy(agent_logits, agent) + complexity_weight * F.cross_entropy(complexity_logits, complexity)
