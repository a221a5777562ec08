"""GRPO on the routing heads: sample a group of routes (agent type, complexity -> tier) per task from the heads'
softmax, score them with a judge, and push the policy toward routes with above-group-average reward, with a KL
penalty to the supervised policy. Reward = task handled correctly - cost_weight * price(tier) / price(top tier)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .heads import RoutingHeads

# judge(task_index, agent_index, tier_index) -> 1.0 when the route handles the task correctly, else 0.0
Judge = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class GrpoSettings:
    group_size: int = 8
    steps: int = 150
    batch_size: int = 128
    lr: float = 5e-4
    kl_coef: float = 0.05
    cost_weight: float = 0.3


@dataclass
class RoutingSpace:
    """Static routing facts as tensors: category of each agent type, tier for (category, complexity), tier prices."""

    agent_category: torch.Tensor  # (A,)
    tier_table: torch.Tensor  # (C, X) tier index
    tier_price: torch.Tensor  # (T,) USD per typical request, tiers ordered cheap -> expensive

    def tiers(self, agent: torch.Tensor, complexity: torch.Tensor) -> torch.Tensor:
        return self.tier_table[self.agent_category[agent], complexity]


def labels_judge(gold_agent: torch.Tensor, gold_tier: torch.Tensor) -> Judge:
    """Offline judge: correct agent type and a tier at least as capable as the one the task needs."""

    def judge(task: torch.Tensor, agent: torch.Tensor, tier: torch.Tensor) -> torch.Tensor:
        return ((agent == gold_agent[task]) & (tier >= gold_tier[task])).float()

    return judge


def reward(correct: torch.Tensor, tier: torch.Tensor, space: RoutingSpace, cost_weight: float) -> torch.Tensor:
    return correct - cost_weight * space.tier_price[tier] / space.tier_price.max()


@torch.no_grad()
def evaluate_routes(
    heads: RoutingHeads, emb: torch.Tensor, gold_agent: torch.Tensor, gold_tier: torch.Tensor,
    space: RoutingSpace, judge: Judge, cost_weight: float,
) -> dict[str, float]:
    heads.eval()
    a_logits, c_logits, _ = heads(emb)
    agent = a_logits.argmax(-1)
    tier = space.tiers(agent, c_logits.argmax(-1))
    task = torch.arange(len(emb))
    correct = judge(task, agent, tier)
    return {
        "agent_accuracy": float((agent == gold_agent).float().mean()),
        "tier_accuracy": float((tier == gold_tier).float().mean()),
        "under_tier_rate": float((tier < gold_tier).float().mean()),
        "cost_usd": float(space.tier_price[tier].sum()),
        "oracle_cost_usd": float(space.tier_price[gold_tier].sum()),
        "always_top_cost_usd": float(space.tier_price.max() * len(emb)),
        "mean_reward": float(reward(correct, tier, space, cost_weight).mean()),
    }


def grpo_train(
    heads: RoutingHeads, emb: torch.Tensor, space: RoutingSpace, judge: Judge, settings: GrpoSettings,
    generator: torch.Generator,
) -> tuple[RoutingHeads, dict[str, list[float]]]:
    """Returns the updated copy of `heads` (the input stays the supervised reference) and the training curves."""
    reference = heads
    policy = copy.deepcopy(heads)
    reference.eval()
    opt = torch.optim.Adam(list(policy.agent.parameters()) + list(policy.complexity.parameters()), lr=settings.lr)
    curves: dict[str, list[float]] = {"mean_reward": [], "kl": []}
    g = settings.group_size
    for _ in range(settings.steps):
        task = torch.randint(0, len(emb), (settings.batch_size,), generator=generator)
        x = emb[task]
        policy.train()
        a_logits, c_logits, _ = policy(x)
        log_pa, log_pc = F.log_softmax(a_logits, -1), F.log_softmax(c_logits, -1)
        with torch.no_grad():
            agent = torch.multinomial(log_pa.exp(), g, replacement=True, generator=generator)  # (B, G)
            cx = torch.multinomial(log_pc.exp(), g, replacement=True, generator=generator)
            tier = space.tiers(agent, cx)
            rep_task = task[:, None].expand(-1, g)
            correct = judge(rep_task.reshape(-1), agent.reshape(-1), tier.reshape(-1)).view(-1, g)
            r = reward(correct, tier, space, settings.cost_weight)
            adv = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-6)
            ref_a, ref_c, _ = reference(x)
            ref_pa, ref_pc = F.softmax(ref_a, -1), F.softmax(ref_c, -1)
        logp = log_pa.gather(1, agent) + log_pc.gather(1, cx)
        kl = (ref_pa * (ref_pa.clamp_min(1e-12).log() - log_pa)).sum(-1) + \
            (ref_pc * (ref_pc.clamp_min(1e-12).log() - log_pc)).sum(-1)
        loss = -(adv * logp).mean() + settings.kl_coef * kl.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        curves["mean_reward"].append(float(r.mean()))
        curves["kl"].append(float(kl.mean().detach()))
    policy.eval()
    return policy, curves
