"""trained_adapter: LoRA-adapted encoder + routing heads + prototypes, trained on dataset_splits (examples and
triplets), selected on validation, reported on test and (read-only) on the peer benchmark."""

import dataclasses
import json

import polars as pl
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.catalog import Catalog
from ..core.io import atomic_dir, dir_digest
from ..core.peer import load_peer_cases
from ..core.schema import SPLITS
from ..resources import DVC_POOL, AnthropicResource, BaseEncoder, DvcResource, PipelineStorage
from ._meta import check, versioned

GROUP = "training"


class TrainConfig(Config):
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "value"])
    learning_rate: float = Field(default=2e-4, description="AdamW lr for the LoRA weights.")
    weight_decay: float = 0.01
    batch_size: int = 16
    epochs: int = 3
    triplets_per_epoch: int = Field(default=1536, description="Triplets sampled per epoch (CPU budget).")
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    margin: float = Field(default=0.5, description="Triplet loss margin on cosine distance.")
    temperature: float = Field(default=0.07, description="InfoNCE temperature.")
    triplet_weight: float = 1.0
    infonce_weight: float = 1.0
    max_seq_length: int = Field(default=128, description="Tokens per training text (request + context fit).")
    patience: int = 2
    context_prob: float = Field(default=0.5, description="Probability a training text carries its context (the "
                                "router is served both forms); heads are fitted on both forms when > 0.")
    supervised_weight: float = Field(default=1.0, description="Weight of the joint agent-type + complexity "
                                     "cross-entropy trained through the adapter (0 = contrastive only).")
    supervised_batch: int = Field(default=16, description="Train examples per step for the supervised loss.")
    supervised_head_lr: float = Field(default=3e-3, description="Learning rate of the linear head trained with the "
                                      "LoRA for the supervised loss.")
    complexity_weight: float = Field(default=1.0, ge=0.0, description="Weight of the complexity cross-entropy in "
                                     "that supervised loss (agent type's is 1; agent type also drives the "
                                     "contrastive losses).")
    val_triplets: int = 128
    val_examples: int = 520
    prototype_per_agent: int = 32
    head_l2_grid: list[float] = Field(default=[3e-5, 1e-4, 3e-4, 1e-3], description="L2 strengths tried for the "
                                      "linear heads (L-BFGS, full batch); each head keeps the best on validation.")
    head_max_iter: int = Field(default=300, description="L-BFGS iterations per head fit.")
    length_features: bool = Field(default=False, description="Heads also read the text's log word and clause "
                                  "counts. Off: templates are about twice as long as typed requests, and the cue "
                                  "under-tiers short real requests.")
    grpo_steps: int = 150
    grpo_group_size: int = 8
    grpo_lr: float = 5e-4
    grpo_kl_coef: float = 0.05
    grpo_cost_weight: float = 0.3
    grpo_judge: str = Field(default="labels", description="labels (offline, gold labels) | claude (needs a key)")
    judge_max_tasks: int = Field(default=200, description="Training requests Claude judges for GRPO.")
    judge_tasks_per_request: int = 20
    judge_use_batches: bool = False
    min_val_accuracy: float = Field(default=0.70, description="Blocking check floor on validation agent accuracy "
                                    "(validation rows come from templates never seen in training).")
    peer_benchmark_dir: str = Field(default="../shared/benchmarks/peer",
                                    description="Read-only test cases, scored after training; skipped if absent.")
    max_under_tier_rate: float = Field(
        default=0.02, ge=0.0, le=1.0,
        description="Tier policy calibration: the stored tier_confidence is the lowest (cheapest) one whose "
                    "under-tiering on the validation split (hybrid router, with and without context; its upper "
                    "bound, see under_tier_confidence_level) is at most this share.")
    under_tier_tolerance: float = Field(
        default=0.005, ge=0.0, le=1.0,
        description="When no confidence meets max_under_tier_rate, the cheapest one whose validation under-tiering "
                    "is within this of the lowest any confidence reaches.")
    under_tier_confidence_level: float = Field(
        default=0.95, ge=0.5, lt=1.0,
        description="The under-tiering compared with max_under_tier_rate is its one-sided Wilson upper bound at this "
                    "level (0.5 = the observed rate): the cheapest confidence that only just meets the target on "
                    "validation under-tiers more on new requests.")
    under_tier_each_form: bool = Field(
        default=True,
        description="The under-tiering target must hold for each request form on its own (validation requests as "
                    "written, with their context, and without it), not only for the mix of both: the served mix "
                    "is unknown, and requests without context are the harder ones for the complexity head.")
    seed: int = 42
    members: int = Field(default=1, ge=1, le=8, description="Adapters trained on the same data with seeds seed, "
                         "seed + 1, ...; the router averages their heads' probabilities (one encoder pass per "
                         "member and request, and members times the training time).")
    view_average: bool = Field(
        default=True,
        description="The router averages its agent-type head over a request's two views, request + context and the "
                    "request alone, for requests that carry a context (a second encoder pass for those; the "
                    "complexity head reads request + context). Written to labels.json; the tier policy is "
                    "calibrated with it.")


def _claude_judgments(context, config: TrainConfig, catalog: Catalog, train: pl.DataFrame,
                      anthropic: AnthropicResource) -> tuple:
    """Claude's judgments of a seeded sample of training requests, for GRPO; failures counted, never fatal."""
    import numpy as np

    from ..core.claude_api import ResponseCache
    from ..core.train.judge import JudgeSettings, claude_judgments

    rng = np.random.default_rng([config.seed, 7])
    rows = np.sort(rng.permutation(train.height)[: config.judge_max_tasks])
    texts = [train["input"][int(i)] for i in rows]
    settings = JudgeSettings(model=anthropic.model, max_tasks=config.judge_max_tasks,
                             tasks_per_request=config.judge_tasks_per_request, use_batches=config.judge_use_batches)
    agent, tier, stats = claude_judgments(anthropic.client(), catalog, texts, settings,
                                          ResponseCache(anthropic.cache_dir))
    ok = agent >= 0
    st = stats.as_dict()
    flat = train.select(pl.col("metadata").struct.unnest()) if "metadata" in train.columns else train
    gold_agent = np.array([catalog.agent_types.index(a) for a in flat["agent_type"]])[rows]
    agreement = float((agent[ok] == gold_agent[ok]).mean()) if ok.any() else 0.0
    meta = {
        "grpo_judge": "claude",
        "judge_requests_sent": st["requests_sent"], "judge_cache_hits": st["cache_hits"],
        "judge_input_tokens": st["input_tokens"], "judge_output_tokens": st["output_tokens"],
        "judge_cost_usd": st["cost_usd"], "judge_tasks_judged": int(ok.sum()),
        "judge_failures": MetadataValue.json(st["failures"]), "judge_rejects": MetadataValue.json(st["rejects"]),
        "judge_agreement_with_labels": round(agreement, 4),
    }
    if not ok.any():
        context.log.warning(f"Claude judge: no usable judgment ({st['requests_planned']} requests, failures "
                            f"{st['failures']}); GRPO skipped, supervised heads kept")
    return (rows[ok], agent[ok], tier[ok]), meta


@asset(
    pool=DVC_POOL,
    group_name=GROUP,
    deps=["dataset_splits"],
    description="LoRA adapter on the base encoder (triplet + InfoNCE), routing heads (agent type, complexity, "
    "quality), agent prototypes, GRPO-tuned heads when that helps; safetensors + JSON, no pickles.",
    check_specs=[AssetCheckSpec("adapter_quality", asset="trained_adapter", blocking=True)],
)
def trained_adapter(
    context: AssetExecutionContext, config: TrainConfig, storage: PipelineStorage, encoder: BaseEncoder,
    anthropic: AnthropicResource, dvc: DvcResource,
) -> MaterializeResult:
    from ..core.train.grpo import GrpoSettings
    from ..core.train.trainer import TrainSettings, route_texts, save_trained, train_router

    catalog = Catalog.from_dict(json.loads(storage.require("seed_templates", "catalog.json").read_text()))
    splits_dir = storage.asset_dir("dataset_splits")
    examples = {s: pl.read_parquet(storage.require("dataset_splits", f"data/{s}.parquet")) for s in SPLITS}
    triplets = {s: pl.read_parquet(storage.require("dataset_splits", f"triplets/{s}.parquet")) for s in SPLITS}
    # every TrainSettings field of the same name comes from the run config; the rest are assembled here
    direct = {f.name for f in dataclasses.fields(TrainSettings)} - {"lora_targets", "head_l2_grid", "grpo", "device"}
    settings = TrainSettings(
        **{name: getattr(config, name) for name in direct},
        lora_targets=tuple(config.lora_targets),
        head_l2_grid=tuple(config.head_l2_grid),
        grpo=GrpoSettings(group_size=config.grpo_group_size, steps=config.grpo_steps, lr=config.grpo_lr,
                          kl_coef=config.grpo_kl_coef, cost_weight=config.grpo_cost_weight),
        device=encoder.device,
    )
    base_model = encoder.resolved_path()
    judged, judge_meta = None, {"grpo_judge": config.grpo_judge}
    if config.grpo_judge == "claude":
        judged, judge_meta = _claude_judgments(context, config, catalog, examples["train"], anthropic)
    elif config.grpo_judge != "labels":
        raise ValueError(f"trained_adapter.grpo_judge '{config.grpo_judge}' must be 'labels' or 'claude'")
    result = train_router(base_model, examples, triplets, catalog, settings, progress=context.log.info,
                          judged=judged)
    members = []
    for i in range(1, config.members):
        context.log.info(f"member {i} of {config.members}: training seed {config.seed + i}")
        members.append(train_router(base_model, examples, triplets, catalog,
                                    dataclasses.replace(settings, seed=config.seed + i), progress=context.log.info,
                                    judged=judged))
    m = result.metrics

    peer = load_peer_cases(config.peer_benchmark_dir)
    peer_meta: dict = {"peer_benchmark": f"absent ({config.peer_benchmark_dir})"}
    if peer is not None:
        pred = route_texts(result.model, result.heads, result.prototypes, peer["task"].to_list())
        agents = catalog.agent_types
        peer = peer.with_columns(
            pl.Series("head", [agents[i] for i in pred["head"].tolist()]),
            pl.Series("prototype", [agents[i] for i in pred["prototype"].tolist()]),
        )
        cat_of = {a: catalog.category_of(a) for a in agents}
        for fname in sorted(peer["file"].unique().to_list()):
            part = peer.filter(pl.col("file") == fname)
            key = "peer96" if "96" in fname else "peer20" if "20" in fname else fname
            m[f"{key}_agent_acc"] = float((part["head"] == part["expected_agent"]).mean())
            m[f"{key}_prototype_acc"] = float((part["prototype"] == part["expected_agent"]).mean())
            m[f"{key}_category_acc"] = float(
                (part["head"].replace_strict(cat_of) == part["expected_agent"].replace_strict(cat_of)).mean())
        peer_meta = {"peer_benchmark": f"{peer.height} cases at {config.peer_benchmark_dir} (test only)"}

    provenance = {
        "base_model": base_model,
        "data_versions": {"dataset_splits": dir_digest(splits_dir),
                          "catalog_fingerprint": catalog.fingerprint()},
        "training_config": config.model_dump(),
        "seed": config.seed,
        "format": "ruvtrain-adapter-v1",
    }
    out_dir = storage.asset_dir("trained_adapter")
    with atomic_dir(out_dir) as tmp:
        sizes = save_trained(result, tmp, catalog, provenance, members, view_average=config.view_average)
        policy = _calibrate_tier_policy(tmp, base_model, encoder.device, examples["validation"], catalog,
                                        config.max_under_tier_rate, config.under_tier_tolerance,
                                        config.under_tier_confidence_level, config.under_tier_each_form)
        context.log.info("tier policy calibrated on validation: "
                         f"{ {k: v for k, v in policy.items() if k != 'curve'} }")
        if members and peer is not None:
            m |= _members_peer_accuracy(tmp, base_model, encoder.device, peer, catalog)

    # `m` holds member 0's figures on the served view; the router as served averages every member (and, with
    # view_average, a request's two views), so its validation accuracy (the calibration pass's, embedding heads,
    # requests as written) is the one the quality check reads
    val_acc = m["validation_agent_acc"]
    if members or config.view_average:
        val_acc = policy["validation_agent_acc"]
    if config.view_average:
        m["views_validation_agent_acc"] = val_acc
    if members:
        m["members_validation_agent_acc"] = val_acc
        for i, x in enumerate(members, start=1):
            m[f"member{i}_validation_agent_acc"] = x.metrics["validation_agent_acc"]
    problems = []
    if not all(x.metrics["losses_finite"] for x in [result, *members]):
        problems.append("a training loss was not finite")
    if val_acc < config.min_val_accuracy:
        problems.append(f"validation agent accuracy {val_acc:.3f} < floor {config.min_val_accuracy}")
    if val_acc <= m["baseline_val_prototype_acc"]:
        problems.append(f"validation agent accuracy {val_acc:.3f} not above the untrained "
                        f"encoder's nearest-prototype baseline {m['baseline_val_prototype_acc']:.3f}")
    curve_md = ["| epoch | train loss | val loss | val prototype acc |", "|---:|---:|---:|---:|"]
    for i, (vl, va) in enumerate(zip(result.curves["val_loss"], result.curves["val_prototype_acc"], strict=True)):
        tl = result.curves["train_loss"][i - 1] if i > 0 and i - 1 < len(result.curves["train_loss"]) else None
        curve_md.append(f"| {i} | {'' if tl is None else f'{tl:.4f}'} | {vl:.4f} | {va:.3f} |")
    if not policy["met"]:
        context.log.warning(f"no tier confidence keeps validation under-tiering at or below "
                            f"{config.max_under_tier_rate}; the model stores {policy['tier_confidence']}, the cheapest "
                            f"within {config.under_tier_tolerance} of the lowest reachable ({policy['under_tier_rate']})")
    numeric = {k: round(float(v), 4) for k, v in m.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    numeric |= {f"tier_policy_{k}": v for k, v in policy.items() if k in (
        "tier_confidence", "under_tier_rate", "tier_acc", "saving_vs_opus")}
    grpo = m["grpo"]
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={
            **numeric,
            **peer_meta,
            **judge_meta,
            "grpo_kept": grpo["kept"],
            "grpo_val_reward_before": round(grpo["validation_before"]["mean_reward"], 4),
            "grpo_val_reward_after": round(grpo["validation_after"]["mean_reward"], 4),
            "grpo_val_cost_before": round(grpo["validation_before"]["cost_usd"], 4),
            "grpo_val_cost_after": round(grpo["validation_after"]["cost_usd"], 4),
            "curves": MetadataValue.md("\n".join(curve_md)),
            "base_model": base_model,
            "files": MetadataValue.json(sizes),
            "path": MetadataValue.path(str(out_dir)),
        },
        check_results=[check("adapter_quality", problems,
                             validation_agent_acc=round(val_acc, 4),
                             baseline=round(m["baseline_val_prototype_acc"], 4))],
        data_version=DataVersion(dir_digest(out_dir)),
    ))


def _members_peer_accuracy(router_dir, base_model: str, device: str, peer: pl.DataFrame, catalog: Catalog) -> dict:
    """Peer agent-type and category accuracy of the saved router with all its members (embedding heads)."""
    from ..core.router import Router
    from ..core.train.trainer import resolve_device

    router = Router(router_dir, base_model=base_model, device=resolve_device(device), tier_confidence=None)
    got = [r.agent_type for r in router.route_many([(t, None) for t in peer["task"].to_list()], "embedding")]
    peer = peer.with_columns(pl.Series("members", got, dtype=pl.String))
    out = {}
    for fname in sorted(peer["file"].unique().to_list()):
        part = peer.filter(pl.col("file") == fname)
        key = "peer96" if "96" in fname else "peer20" if "20" in fname else fname
        hits = [g == t for g, t in zip(part["members"], part["expected_agent"], strict=True)]
        cats = [g is not None and catalog.category_of(g) == catalog.category_of(t)
                for g, t in zip(part["members"], part["expected_agent"], strict=True)]
        out[f"members_{key}_agent_acc"] = sum(hits) / len(hits)
        out[f"members_{key}_category_acc"] = sum(cats) / len(cats)
    return out


def _calibrate_tier_policy(router_dir, base_model: str, device: str, validation: pl.DataFrame, catalog: Catalog,
                           max_under_tier_rate: float, tolerance: float, confidence_level: float,
                           each_form: bool = True) -> dict:
    """Route the validation split with the freshly saved router (hybrid, as served) and store in its labels.json the
    cheapest tier confidence whose validation under-tiering (its one-sided upper bound at `confidence_level`) is at
    most `max_under_tier_rate` (router.py `auto`). Requests arrive with or without their context, so every validation
    row that has one is routed both ways (the shorter bare form is the harder one for the complexity head); with
    `each_form` the target holds for each of the two forms on its own."""
    from ..core.router import RequestViews, Router, bare_view_rows, request_text
    from ..core.tiers import calibrate_tier_confidence, routing_spec
    from ..core.train.trainer import flatten_examples, resolve_device

    val = flatten_examples(validation)
    router = Router(router_dir, base_model=base_model, device=resolve_device(device), tier_confidence=None)
    rows = list(zip(val["input"].to_list(), val["context"].to_list(), val["expected_model"].to_list(), strict=True))
    # the second form: every row with a context, without it (the bare views of a view-averaging router as well)
    bare = bare_view_rows([(i, c) for i, c, _ in rows])
    texts = [request_text(i, c) for i, c, _ in rows] + [request_text(rows[k][0], None) for k in bare]
    expected = [m for _, _, m in rows] + [rows[k][2] for k in bare]
    forms = ["as written"] * len(rows) + ["without context"] * len(bare)
    emb = router.embed(texts)
    views = RequestViews(bare, texts[len(rows):], emb[len(rows):]) if router.view_average else None
    policy = calibrate_tier_confidence(router, texts, emb, expected, routing_spec(catalog),
                                       max_under_tier_rate, tolerance, confidence_level=confidence_level,
                                       groups=forms if each_form else None, views=views)
    # agent-type accuracy of the router as saved (all members, both views), embedding heads, requests as written
    agents = router.labels["agent_types"]
    truth = val["agent_type"].to_list()
    a_prob, _ = router.heads(emb[: len(rows)], texts[: len(rows)], views)
    hits = sum(agents[int(k)] == t for k, t in zip(a_prob.argmax(-1), truth, strict=True))
    accuracy = round(hits / max(len(rows), 1), 4)
    labels_file = router_dir / "labels.json"
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    labels["tier_policy"] = {**policy, "selected_on": "validation (with and without context"
                                                      + (", each form on its own)" if each_form else ")")}
    labels_file.write_text(json.dumps(labels, indent=2) + "\n", encoding="utf-8")
    return {**policy, "validation_agent_acc": accuracy}
