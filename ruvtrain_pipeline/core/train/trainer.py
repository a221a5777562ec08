"""The trainer behind `trained_adapter`: LoRA on the base encoder with triplet + InfoNCE losses, validation every
epoch with early stopping (best adapter kept), routing heads on the adapted embedding, agent prototypes, and a GRPO
pass on the heads that is kept only when it helps on validation."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
import torch.nn.functional as F

from ..catalog import Catalog
from ..router import TEXT_FEATURES, head_input, request_text
from .grpo import GrpoSettings, RoutingSpace, evaluate_routes, grpo_train, labels_judge
from .heads import RoutingHeads, fit_heads
from .losses import InfoNCELoss, TripletCosineLoss, routing_supervision_loss

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    # LoRA on the encoder's attention
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("query", "value")
    # contrastive phase (seed: margin 0.5, temperature 0.07, weight decay 0.01, batch 16)
    learning_rate: float = 2e-4
    weight_decay: float = 0.01
    batch_size: int = 16
    epochs: int = 3
    triplets_per_epoch: int = 1536
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    margin: float = 0.5
    temperature: float = 0.07
    triplet_weight: float = 1.0
    infonce_weight: float = 1.0
    max_seq_length: int = 128
    patience: int = 2
    # requests arrive with or without their context: each training text carries its context with this probability
    # (heads are fitted on both forms), so training sees what the router is served
    context_prob: float = 0.5
    # joint supervision through the adapter: cross-entropy on agent type and complexity of `supervised_batch` train
    # examples per step, from a linear head trained alongside the LoRA (0 = contrastive losses only)
    supervised_weight: float = 1.0
    supervised_batch: int = 16
    supervised_head_lr: float = 3e-3  # learning rate of that linear head
    # weight of the complexity term within that supervision (agent type's is 1): agent type also drives the triplet
    # and InfoNCE losses, complexity only this term
    complexity_weight: float = 1.0
    # validation sizes (per epoch)
    val_triplets: int = 128
    val_examples: int = 520
    prototype_per_agent: int = 32
    # heads: L2-regularized linear models fitted by L-BFGS, the L2 strength of each chosen on validation
    head_l2_grid: tuple[float, ...] = (3e-5, 1e-4, 3e-4, 1e-3)
    head_max_iter: int = 300
    # the heads also read two length features of the text (router.text_features). Off by default: templates are
    # much longer than the requests people type (median ~42 vs ~20 words), so a length cue learnt on templates
    # reads real requests as Simple and under-tiers them (measured: realistic under-tiering 2.9 % -> 10.3 %)
    length_features: bool = False
    # GRPO
    grpo: GrpoSettings = field(default_factory=GrpoSettings)
    seed: int = 42
    device: str = "auto"


@dataclass
class TrainResult:
    model: Any
    heads: RoutingHeads
    prototypes: torch.Tensor
    metrics: dict[str, Any]
    curves: dict[str, list[float]]
    lora_config: dict[str, Any]


def resolve_device(device: str) -> str:
    return ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device


def flatten_examples(df: pl.DataFrame) -> pl.DataFrame:
    """Seed-format split (nested metadata) -> the flat columns the trainer uses."""
    if "metadata" in df.columns:
        df = df.select("input", "context", "output_agent", pl.col("metadata").struct.unnest())
    return df


def embed(model: Any, texts: list[str], batch_size: int = 64) -> torch.Tensor:
    """Normalized embeddings without gradients (eval mode)."""
    model.eval()
    with torch.no_grad():
        out = model.encode(texts, batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                           show_progress_bar=False)
    return out.float().cpu()


def _forward(model: Any, texts: list[str]) -> torch.Tensor:
    features = model.preprocess(texts)
    device = next(model.parameters()).device
    features = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in features.items()}
    return model(features)["sentence_embedding"]


def prototype_accuracy(emb: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> float:
    return float(((emb @ prototypes.T).argmax(-1) == labels).float().mean())


def compute_prototypes(emb: torch.Tensor, labels: torch.Tensor, n: int) -> torch.Tensor:
    protos = torch.zeros(n, emb.shape[1])
    for a in range(n):
        mask = labels == a
        if mask.any():
            protos[a] = emb[mask].mean(0)
    return F.normalize(protos, dim=-1)


def _sample_per_agent(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    idx = []
    for a in np.unique(labels):
        rows = np.flatnonzero(labels == a)
        idx.append(rng.permutation(rows)[:k])
    return np.sort(np.concatenate(idx))


def with_context(texts: list[str], context_of: dict[str, str | None], prob: float,
                 rng: np.random.Generator) -> list[str]:
    """Each text that has a context gets it appended (the router's serve form) with probability `prob`."""
    draws = rng.random(len(texts))
    return [request_text(t, context_of.get(t)) if d < prob else t for t, d in zip(texts, draws, strict=True)]


def _fill_texts(triplets: pl.DataFrame, examples: pl.DataFrame, rng: np.random.Generator,
                context_prob: float = 0.0) -> tuple[list, list, list]:
    """Anchor, positive and negative texts; a missing example text is a random same-split example of that agent.
    With `context_prob` > 0 each text carries its example's context with that probability."""
    by_agent: dict[str, list[str]] = {}
    for agent, text in examples.select("agent_type", "input").iter_rows():
        by_agent.setdefault(agent, []).append(text)
    context_of = dict(examples.select("input", "context").iter_rows())

    def fill(texts: list[str | None], agents: list[str]) -> list[str]:
        out = []
        for t, a in zip(texts, agents, strict=True):
            if t is None:
                pool = by_agent[a]
                t = pool[int(rng.integers(len(pool)))]
            out.append(t)
        return with_context(out, context_of, context_prob, rng) if context_prob > 0 else out

    anchors = triplets["anchor"].to_list()
    if context_prob > 0:
        anchors = with_context(anchors, context_of, context_prob, rng)
    return (
        anchors,
        fill(triplets["positive_text"].to_list(), triplets["positive"].to_list()),
        fill(triplets["negative_text"].to_list(), triplets["negative"].to_list()),
    )


def routing_space(catalog: Catalog) -> RoutingSpace:
    tiers = catalog.tier_order
    cat_idx = {c: i for i, c in enumerate(catalog.categories)}
    return RoutingSpace(
        agent_category=torch.tensor([cat_idx[catalog.category_of(a)] for a in catalog.agent_types]),
        tier_table=torch.tensor([[tiers.index(catalog.model_for(c, cx)) for cx in catalog.complexities]
                                 for c in catalog.categories]),
        tier_price=torch.tensor([catalog.price_per_request(t) for t in tiers], dtype=torch.float32),
    )


def label_tensors(df: pl.DataFrame, catalog: Catalog) -> dict[str, torch.Tensor]:
    a_idx = {a: i for i, a in enumerate(catalog.agent_types)}
    c_idx = {c: i for i, c in enumerate(catalog.complexities)}
    t_idx = {t: i for i, t in enumerate(catalog.tier_order)}
    return {
        "agent": torch.tensor([a_idx[a] for a in df["agent_type"]]),
        "complexity": torch.tensor([c_idx[c] for c in df["complexity"]]),
        "tier": torch.tensor([t_idx[t] for t in df["expected_model"]]),
        "quality": torch.tensor(df["quality_score"].to_numpy(), dtype=torch.float32),
    }


def train_router(
    model_path: str,
    examples: dict[str, pl.DataFrame],
    triplets: dict[str, pl.DataFrame],
    catalog: Catalog,
    settings: TrainSettings,
    progress: Callable[[str], None] = log.info,
    judged: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> TrainResult:
    """Train on the train split, select on validation, report on test. `examples`/`triplets` keyed by split.

    `judged` = (train row indices, agent index, tier index) from an external judge (Claude); GRPO then trains on
    those rows against those judgments instead of the gold labels. Validation always uses the gold labels.
    """
    if settings.triplet_weight <= 0 and settings.infonce_weight <= 0 and settings.supervised_weight <= 0:
        raise ValueError("trained_adapter: triplet_weight, infonce_weight and supervised_weight are all 0, so the "
                         "adapter has no loss to learn from; set at least one above 0")
    from peft import LoraConfig
    from sentence_transformers import SentenceTransformer

    started = time.perf_counter()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    device = resolve_device(settings.device)
    train_ex, val_ex, test_ex = (flatten_examples(examples[s]) for s in ("train", "validation", "test"))
    n_agents = len(catalog.agent_types)
    labels = {s: label_tensors(df, catalog) for s, df in (("train", train_ex), ("validation", val_ex),
                                                          ("test", test_ex))}

    model = SentenceTransformer(model_path, device=device)
    model.max_seq_length = settings.max_seq_length
    dim = model.get_embedding_dimension()

    # fixed validation probes: a per-agent sample of train texts for prototypes, a sample of validation texts
    proto_idx = _sample_per_agent(labels["train"]["agent"].numpy(), settings.prototype_per_agent, rng)
    val_idx = np.sort(rng.permutation(val_ex.height)[: settings.val_examples])
    train_ctx = dict(train_ex.select("input", "context").iter_rows())
    val_ctx = dict(val_ex.select("input", "context").iter_rows())
    proto_texts = with_context([train_ex["input"][int(i)] for i in proto_idx], train_ctx, settings.context_prob, rng)
    val_texts = with_context([val_ex["input"][int(i)] for i in val_idx], val_ctx, settings.context_prob, rng)
    proto_labels = labels["train"]["agent"][torch.as_tensor(proto_idx)]
    val_labels = labels["validation"]["agent"][torch.as_tensor(val_idx)]

    def probe() -> float:
        protos = compute_prototypes(embed(model, proto_texts), proto_labels, n_agents)
        return prototype_accuracy(embed(model, val_texts), val_labels, protos)

    baseline_acc = probe()
    progress(f"untrained encoder: nearest-prototype validation accuracy {baseline_acc:.3f}")

    model.add_adapter(LoraConfig(r=settings.lora_rank, lora_alpha=settings.lora_alpha,
                                 lora_dropout=settings.lora_dropout, target_modules=list(settings.lora_targets),
                                 bias="none"))
    trainable = [p for p in model.parameters() if p.requires_grad]
    initial_adapter = [p.detach().clone() for p in trainable]
    triplet_loss = TripletCosineLoss(settings.margin)
    infonce = InfoNCELoss(settings.temperature)

    tr_a, tr_p, tr_n = _fill_texts(triplets["train"], train_ex, rng, settings.context_prob)
    tr_lab = torch.tensor([catalog.agent_types.index(a) for a in triplets["train"]["positive"]])
    val_trip = triplets["validation"]
    vt_idx = np.sort(rng.permutation(val_trip.height)[: settings.val_triplets])
    val_trip = val_trip[vt_idx]
    va_a, va_p, va_n = _fill_texts(val_trip, val_ex, rng, settings.context_prob)
    va_lab = torch.tensor([catalog.agent_types.index(a) for a in val_trip["positive"]])

    # joint supervision: a linear agent/complexity head on the adapted embedding, trained with the LoRA
    aux = RoutingHeads(dim, n_agents, len(catalog.complexities)).to(device)
    sup_texts = train_ex["input"].to_list()
    sup_agent, sup_cx = labels["train"]["agent"], labels["train"]["complexity"]

    per_epoch = min(settings.triplets_per_epoch, len(tr_a))
    steps_per_epoch = max(1, per_epoch // settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    groups = [{"params": trainable, "lr": settings.learning_rate}]
    if settings.supervised_weight > 0:
        groups.append({"params": list(aux.parameters()), "lr": settings.supervised_head_lr})
    opt = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    warmup = max(1, int(settings.warmup_ratio * total_steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup))))

    # with both contrastive weights at 0 the triplets are not embedded at all (supervised objective only)
    pairs_on = settings.triplet_weight > 0 or settings.infonce_weight > 0

    def contrastive(a: list[str], p: list[str], n: list[str], lab: torch.Tensor,
                    sup: tuple[list[str], torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        if not pairs_on:
            a, p, n = [], [], []
        extra = sup[0] if sup else []
        if not a and not extra:
            return torch.zeros(())
        emb = _forward(model, a + p + n + extra)
        b = len(a)
        loss = torch.zeros((), device=emb.device)
        if b:
            ea, ep, en = emb[:b], emb[b : 2 * b], emb[2 * b : 3 * b]
            loss = loss + settings.triplet_weight * triplet_loss(ea, ep, en) + \
                settings.infonce_weight * infonce(ea, ep, en, lab.to(emb.device))
        if sup:
            a_logits, c_logits, _ = aux(emb[3 * b :])
            loss = loss + settings.supervised_weight * routing_supervision_loss(
                a_logits, c_logits, sup[1].to(emb.device), sup[2].to(emb.device), settings.complexity_weight)
        return loss

    def sup_batch() -> tuple[list[str], torch.Tensor, torch.Tensor] | None:
        if settings.supervised_weight <= 0:
            return None
        idx = rng.integers(len(sup_texts), size=settings.supervised_batch)
        texts = with_context([sup_texts[i] for i in idx], train_ctx, settings.context_prob, rng)
        sel = torch.as_tensor(idx)
        return texts, sup_agent[sel], sup_cx[sel]

    def val_loss() -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for s in range(0, len(va_a), 64):
                sl = slice(s, s + 64)
                total += float(contrastive(va_a[sl], va_p[sl], va_n[sl], va_lab[sl])) * len(va_a[sl])
        return total / max(1, len(va_a))

    curves: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "val_prototype_acc": []}
    curves["val_loss"].append(val_loss())
    curves["val_prototype_acc"].append(baseline_acc)
    best = (-1.0, None, 0)
    bad = 0
    finite = True
    step = 0
    for epoch in range(settings.epochs):
        model.train()
        order = rng.permutation(len(tr_a))[: steps_per_epoch * settings.batch_size]
        losses = []
        for s in range(steps_per_epoch):
            sel = order[s * settings.batch_size : (s + 1) * settings.batch_size]
            loss = contrastive([tr_a[i] for i in sel], [tr_p[i] for i in sel], [tr_n[i] for i in sel],
                               tr_lab[torch.as_tensor(sel)], sup_batch())
            if not torch.isfinite(loss):
                finite = False
                break
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, settings.max_grad_norm)
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
            if step % 25 == 0:
                progress(f"epoch {epoch + 1} step {step}/{total_steps} loss {np.mean(losses[-25:]):.4f}")
        if not finite:
            progress("non-finite loss: stopping")
            break
        curves["train_loss"].append(float(np.mean(losses)))
        vl = val_loss()
        acc = probe()
        curves["val_loss"].append(vl)
        curves["val_prototype_acc"].append(acc)
        progress(f"epoch {epoch + 1}: train loss {curves['train_loss'][-1]:.4f}, val loss {vl:.4f}, "
                 f"val prototype acc {acc:.3f}")
        if acc > best[0] + 1e-6:
            best = (acc, [p.detach().clone() for p in trainable], epoch + 1)
            bad = 0
        else:
            bad += 1
            if bad >= settings.patience:
                progress(f"early stop after epoch {epoch + 1}")
                break
    if best[1] is not None:
        with torch.no_grad():
            for p, v in zip(trainable, best[1], strict=True):
                p.copy_(v)
    adapter_delta = float(sum((p.detach() - p0).abs().sum() for p, p0 in zip(trainable, initial_adapter,
                                                                              strict=True)))
    t_contrastive = time.perf_counter() - started
    progress(f"contrastive phase done in {t_contrastive:.0f}s; best epoch {best[2]}")

    # heads and prototypes on the adapted embedding, in the serve form (request + context) and, when contexts are
    # part of training, also the bare request (requests often arrive without one). With length_features the heads
    # read the embedding followed by the text's length features (router.head_input); prototypes: embedding alone.
    n_features = len(TEXT_FEATURES) if settings.length_features else 0

    def head_x(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        e = embed(model, texts)
        return e, torch.from_numpy(head_input(e.numpy(), texts, dim + n_features))

    emb, x = {}, {}
    for s, df in (("train", train_ex), ("validation", val_ex), ("test", test_ex)):
        emb[s], x[s] = head_x([request_text(i, c) for i, c in zip(df["input"], df["context"], strict=True)])
    fit_emb, fit_x, fit_labels = dict(emb), dict(x), dict(labels)
    if settings.context_prob > 0:
        for s, df in (("train", train_ex), ("validation", val_ex)):
            bare_emb, bare_x = head_x(df["input"].to_list())
            fit_emb[s], fit_x[s] = torch.cat([emb[s], bare_emb]), torch.cat([x[s], bare_x])
            fit_labels[s] = {k: torch.cat([v, v]) for k, v in labels[s].items()}
    prototypes = compute_prototypes(fit_emb["train"], fit_labels["train"]["agent"], n_agents)
    heads = RoutingHeads(dim + n_features, n_agents, len(catalog.complexities))
    head_curves = fit_heads(heads, {"emb": fit_x["train"], **fit_labels["train"]},
                            {"emb": fit_x["validation"], **fit_labels["validation"]},
                            l2_grid=settings.head_l2_grid, max_iter=settings.head_max_iter)
    head_l2 = {k.removeprefix("chosen_l2_"): head_curves.pop(k)[0] for k in list(head_curves)
               if k.startswith("chosen_l2_")}
    progress(f"heads: L2 per head {head_l2}; validation agent {max(head_curves['val_agent_acc']):.3f}, "
             f"complexity {max(head_curves['val_complexity_acc']):.3f} (both request forms)")

    # GRPO on the heads (offline labels judge), kept only if validation reward improves without losing agent-type or
    # complexity accuracy: the served tier policy is calibrated on the heads' probabilities afterwards, so a GRPO
    # that buys reward by shifting complexity upwards (fewer under-tiers at argmax) would be counted twice
    space = routing_space(catalog)
    if judged is None:
        grpo_emb = x["train"]
        judge_train = labels_judge(labels["train"]["agent"], labels["train"]["tier"])
        judge_name = "labels"
    else:
        rows, j_agent, j_tier = judged
        grpo_emb = x["train"][torch.as_tensor(rows, dtype=torch.long)]
        judge_train = labels_judge(torch.as_tensor(j_agent), torch.as_tensor(j_tier))
        judge_name = "claude"
    judge_val = labels_judge(labels["validation"]["agent"], labels["validation"]["tier"])
    cw = settings.grpo.cost_weight
    before = evaluate_routes(heads, x["validation"], labels["validation"]["agent"], labels["validation"]["tier"],
                             space, judge_val, cw)
    if len(grpo_emb) and settings.grpo.steps > 0:
        tuned, grpo_curves = grpo_train(heads, grpo_emb, space, judge_train, settings.grpo, gen)
    else:
        tuned, grpo_curves = heads, {"mean_reward": [], "kl": []}
    after = evaluate_routes(tuned, x["validation"], labels["validation"]["agent"], labels["validation"]["tier"],
                            space, judge_val, cw)
    for state, h in ((before, heads), (after, tuned)):
        with torch.no_grad():
            state["complexity_accuracy"] = float(
                (h(x["validation"])[1].argmax(-1) == labels["validation"]["complexity"]).float().mean())
    grpo_kept = bool(len(grpo_emb)) and after["mean_reward"] > before["mean_reward"] + 1e-4 and \
        after["agent_accuracy"] >= before["agent_accuracy"] - 0.005 and \
        after["complexity_accuracy"] >= before["complexity_accuracy"] - 0.005
    if grpo_kept:
        heads = tuned
    progress(f"GRPO: validation reward {before['mean_reward']:.4f} -> {after['mean_reward']:.4f}; "
             f"{'kept' if grpo_kept else 'supervised heads kept (GRPO did not help)'}")

    # held-out metrics
    heads.eval()
    metrics: dict[str, Any] = {"baseline_val_prototype_acc": baseline_acc,
                               "best_val_prototype_acc": best[0], "best_epoch": best[2],
                               "losses_finite": finite, "adapter_l1_change": adapter_delta,
                               "val_loss_first": curves["val_loss"][0], "val_loss_best": min(curves["val_loss"]),
                               "head_l2": head_l2, "head_features": list(TEXT_FEATURES) if n_features else []}
    cat_of = space.agent_category
    for split in ("validation", "test"):
        with torch.no_grad():
            a_logits, c_logits, q = heads(x[split])
        gold = labels[split]
        pred = a_logits.argmax(-1)
        metrics[f"{split}_agent_acc"] = float((pred == gold["agent"]).float().mean())
        metrics[f"{split}_category_acc"] = float((cat_of[pred] == cat_of[gold["agent"]]).float().mean())
        metrics[f"{split}_complexity_acc"] = float((c_logits.argmax(-1) == gold["complexity"]).float().mean())
        metrics[f"{split}_prototype_acc"] = prototype_accuracy(emb[split], gold["agent"], prototypes)
        metrics[f"{split}_quality_mae"] = float((q - gold["quality"]).abs().mean())
        routes = evaluate_routes(heads, x[split], gold["agent"], gold["tier"], space,
                                 labels_judge(gold["agent"], gold["tier"]), cw)
        metrics[f"{split}_tier_acc"] = routes["tier_accuracy"]
        metrics[f"{split}_under_tier_rate"] = routes["under_tier_rate"]
        metrics[f"{split}_cost_usd"] = routes["cost_usd"]
        metrics[f"{split}_always_opus_cost_usd"] = routes["always_top_cost_usd"]
    metrics["grpo"] = {"kept": grpo_kept, "judge": judge_name, "tasks": len(grpo_emb), "validation_before": before,
                       "validation_after": after, "settings": asdict(settings.grpo)}
    metrics["seconds_total"] = time.perf_counter() - started
    metrics["seconds_contrastive"] = t_contrastive
    metrics["contrastive_steps"] = step
    metrics["triplets_seen"] = step * settings.batch_size
    all_curves = {**curves, **{f"heads_{k}": v for k, v in head_curves.items()},
                  **{f"grpo_{k}": v for k, v in grpo_curves.items()}}
    lora = {"r": settings.lora_rank, "alpha": settings.lora_alpha, "dropout": settings.lora_dropout,
            "targets": list(settings.lora_targets)}
    return TrainResult(model, heads, prototypes, metrics, all_curves, lora)


def route_texts(result_model: Any, heads: RoutingHeads, prototypes: torch.Tensor, texts: list[str]) -> dict[str, Any]:
    """Head and prototype predictions (agent indices) for raw texts."""
    emb = embed(result_model, texts)
    with torch.no_grad():
        a_logits, _, _ = heads(torch.from_numpy(head_input(emb.numpy(), texts, heads.agent.in_features)))
    return {"head": a_logits.argmax(-1), "prototype": (emb @ prototypes.T).argmax(-1)}


def canonical_adapter_config(adapter_dir: Path) -> None:
    """peft keeps `target_modules` as a set and writes it in the order of the process's string hash, so two runs of
    the same config and seed wrote different adapter_config.json bytes; sort the set-valued fields."""
    path = Path(adapter_dir) / "adapter_config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "exclude_modules"):
        if isinstance(cfg.get(key), list):
            cfg[key] = sorted(cfg[key])
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True), encoding="utf-8")


def save_member(result: TrainResult, out: Path) -> None:
    """One member's weights: the adapter (peft safetensors), heads and prototypes (safetensors). No pickles."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.model.save_pretrained(str(out / "adapter"))
    canonical_adapter_config(out / "adapter")
    heads = {f"{k}": v.detach().contiguous().cpu() for k, v in result.heads.state_dict().items()}
    save_file(heads, str(out / "heads.safetensors"), metadata={"format": "ruvtrain-heads-v1"})
    save_file({"prototypes": result.prototypes.contiguous()}, str(out / "prototypes.safetensors"),
              metadata={"format": "ruvtrain-prototypes-v1"})


def save_trained(result: TrainResult, out: Path, catalog: Catalog, extra_metadata: dict[str, Any],
                 members: Sequence[TrainResult] = (), view_average: bool = False) -> dict[str, int]:
    """A router folder: member 0 (`result`) at the top, every further member under members/<i>/ (router.py), labels
    (`view_average`: the router averages its agent-type head over a request's two views, router.py) and metadata
    (JSON; each further member's metrics under `member_metrics`)."""
    out = Path(out)
    save_member(result, out)
    for i, member in enumerate(members, start=1):
        save_member(member, out / "members" / str(i))
    labels = {
        "agent_types": catalog.agent_types,
        "categories": catalog.categories,
        "agent_category": {a: catalog.category_of(a) for a in catalog.agent_types},
        "complexities": catalog.complexities,
        "tiers": catalog.tier_order,
        "routing_table": catalog.routing,
        "prices_per_request": {t: catalog.price_per_request(t) for t in catalog.tier_order},
    }
    if members:
        labels["members"] = 1 + len(members)
    if view_average:
        labels["view_average"] = True
    (out / "labels.json").write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")

    def clean(x: Any) -> Any:
        if isinstance(x, float):
            return round(x, 6) if math.isfinite(x) else None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        return x

    meta = clean({**extra_metadata, "metrics": result.metrics, "curves": result.curves, "lora": result.lora_config,
                  **({"member_metrics": [m.metrics for m in members]} if members else {})})
    (out / "metadata.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return {p.name: p.stat().st_size for p in out.rglob("*") if p.is_file()}
