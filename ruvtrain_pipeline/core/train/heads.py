"""Routing heads on the (adapted) sentence embedding plus the request's length features: agent type, complexity,
quality score. Each head is a linear model fitted on its own, full batch, by L-BFGS with an L2 penalty chosen on
validation: a convex fit whose optimum does not depend on batch order or on when early stopping fires."""

from __future__ import annotations

from collections.abc import Sequence

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


def _fit_linear(layer: nn.Linear, x: torch.Tensor, loss_of, l2: float, max_iter: int) -> float:
    """Minimize loss_of(layer(x)) + l2 * ||W||^2 from zero weights with L-BFGS; returns the final objective."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    opt = torch.optim.LBFGS(layer.parameters(), lr=1.0, max_iter=max_iter, tolerance_grad=1e-6,
                            tolerance_change=1e-9, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_of(layer(x)) + l2 * (layer.weight ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(loss_of(layer(x)) + l2 * (layer.weight ** 2).sum())


def fit_heads(
    heads: RoutingHeads,
    train: dict[str, torch.Tensor],
    val: dict[str, torch.Tensor],
    *,
    l2_grid: Sequence[float],
    max_iter: int,
) -> dict[str, list[float]]:
    """Cross-entropy for agent type and complexity, MSE for quality. For every L2 strength in `l2_grid` each head is
    fitted on `train` and scored on `val` (agent and complexity accuracy, quality MSE); each head keeps the strength
    that scores best on its own metric. Returns the per-strength curves (and the chosen strengths)."""
    if not l2_grid:
        raise ValueError("head_l2_grid must name at least one L2 strength")
    ce = nn.functional.cross_entropy
    specs = {
        "agent": (lambda out: ce(out, train["agent"]), lambda out: float((out.argmax(-1) == val["agent"]).float().mean()), True),
        "complexity": (lambda out: ce(out, train["complexity"]),
                       lambda out: float((out.argmax(-1) == val["complexity"]).float().mean()), True),
        "quality": (lambda out: nn.functional.mse_loss(torch.sigmoid(out).squeeze(-1), train["quality"]),
                    lambda out: float(nn.functional.mse_loss(torch.sigmoid(out).squeeze(-1), val["quality"])), False),
    }
    curves: dict[str, list[float]] = {"l2": [float(v) for v in l2_grid], "val_agent_acc": [],
                                      "val_complexity_acc": [], "val_quality_mse": [], "train_loss": []}
    best: dict[str, tuple[float, float, dict]] = {}
    for l2 in l2_grid:
        total = 0.0
        for name, (train_loss, score, higher) in specs.items():
            layer: nn.Linear = getattr(heads, name)
            total += _fit_linear(layer, train["emb"], train_loss, float(l2), max_iter)
            with torch.no_grad():
                s = score(layer(val["emb"]))
            curves[{"agent": "val_agent_acc", "complexity": "val_complexity_acc",
                    "quality": "val_quality_mse"}[name]].append(s)
            key = s if higher else -s
            if name not in best or key > best[name][0] + 1e-9:
                best[name] = (key, float(l2), {k: v.detach().clone() for k, v in layer.state_dict().items()})
        curves["train_loss"].append(total)
    for name, (_, l2, state) in best.items():
        getattr(heads, name).load_state_dict(state)
        curves[f"chosen_l2_{name}"] = [l2]
    heads.eval()
    return curves
