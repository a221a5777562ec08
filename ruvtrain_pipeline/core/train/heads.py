"""Routing heads on the (adapted) sentence embedding: agent type, complexity, quality score."""

from __future__ import annotations

import torch
from torch import nn


class RoutingHeads(nn.Module):
    def __init__(self, dim: int, n_agents: int, n_complexities: int) -> None:
        super().__init__()
        self.agent = nn.Linear(dim, n_agents)
        self.complexity = nn.Linear(dim, n_complexities)
        self.quality = nn.Linear(dim, 1)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.agent(emb), self.complexity(emb), torch.sigmoid(self.quality(emb)).squeeze(-1)


def train_heads(
    heads: RoutingHeads,
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    *,
    epochs: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    patience: int,
    generator: torch.Generator,
) -> dict[str, list[float]]:
    """Cross-entropy on agent and complexity, MSE on quality; early stopping on validation agent accuracy."""
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=weight_decay)
    ce = nn.CrossEntropyLoss()
    curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_agent_acc": [], "val_complexity_acc": []}
    best = (-1.0, None)
    bad = 0
    n = len(train["emb"])
    for _ in range(epochs):
        heads.train()
        perm = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            a, c, q = heads(train["emb"][idx])
            loss = ce(a, train["agent"][idx]) + ce(c, train["complexity"][idx]) + \
                nn.functional.mse_loss(q, train["quality"][idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        heads.eval()
        with torch.no_grad():
            a, c, q = heads(val["emb"])
            vloss = float(ce(a, val["agent"]) + ce(c, val["complexity"]) + nn.functional.mse_loss(q, val["quality"]))
            acc = float((a.argmax(-1) == val["agent"]).float().mean())
            cacc = float((c.argmax(-1) == val["complexity"]).float().mean())
        curves["train_loss"].append(total / n)
        curves["val_loss"].append(vloss)
        curves["val_agent_acc"].append(acc)
        curves["val_complexity_acc"].append(cacc)
        if acc > best[0] + 1e-6:
            best = (acc, {k: v.detach().clone() for k, v in heads.state_dict().items()})
            bad = 0
        else:
            bad += 1
            if bad >= patience:
                break
    if best[1] is not None:
        heads.load_state_dict(best[1])
    return curves
