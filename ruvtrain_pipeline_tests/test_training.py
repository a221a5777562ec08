"""trained_adapter through Dagster on a tiny config: real LoRA training of the real MiniLM encoder."""

from __future__ import annotations

import json
import os

import pytest
from safetensors.torch import load_file

from ruvtrain_pipeline.definitions import all_assets

from .test_assets import DATASET_ASSETS, _materialize, run_config

pytestmark = pytest.mark.slow

TINY_TRAIN = {
    "epochs": 2, "triplets_per_epoch": 64, "batch_size": 8, "learning_rate": 1e-3, "val_triplets": 24,
    "val_examples": 80, "prototype_per_agent": 4, "grpo_steps": 20, "grpo_group_size": 4,
    "max_seq_length": 32, "min_val_accuracy": 0.5, "patience": 3,
}
# the dataset chain and training, without the export and evaluation downstream
TRAINING_ASSETS = [a for a in all_assets if any(k.to_user_string() in [*DATASET_ASSETS, "trained_adapter"]
                                                for k in a.keys)]


def _config(catalog_dir, tmp_path, seed=42, **train):
    cfg = run_config(catalog_dir, per_agent=21, provider="template")
    cfg["ops"]["trained_adapter"] = {"config": TINY_TRAIN | {"seed": seed,
                                                             "peer_benchmark_dir": str(tmp_path / "none")} | train}
    return cfg


def test_trained_adapter_end_to_end(tiny_pipeline):
    data, result = tiny_pipeline.data, tiny_pipeline.result
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["adapter_quality"] is True
    out = data / "trained_adapter"
    names = {p.name for p in out.rglob("*") if p.is_file()}
    assert {"adapter_model.safetensors", "adapter_config.json", "heads.safetensors", "prototypes.safetensors",
            "labels.json", "metadata.json"} <= names
    assert not [n for n in names if n.endswith((".pkl", ".pt", ".bin", ".pickle"))]
    # LoRA B matrices start at zero: non-zero B means the adapter really trained
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    b_mats = [v for k, v in adapter.items() if "lora_B" in k]
    assert b_mats and all(float(v.abs().sum()) > 0 for v in b_mats)
    meta = json.loads((out / "metadata.json").read_text())
    m = meta["metrics"]
    assert m["losses_finite"] and m["adapter_l1_change"] > 0
    assert m["val_loss_best"] < m["val_loss_first"], "validation loss did not fall"
    assert m["validation_agent_acc"] > m["baseline_val_prototype_acc"]
    assert meta["data_versions"]["dataset_splits"] and meta["seed"] == 42
    assert meta["training_config"]["margin"] == 0.5 and meta["training_config"]["temperature"] == 0.07
    heads = load_file(str(out / "heads.safetensors"))
    # by default the heads read the embedding alone (length_features off); each keeps an L2 strength from the grid
    assert heads["agent.weight"].shape == (13, 384) and heads["complexity.weight"].shape == (3, 384)
    assert m["head_features"] == [] and meta["training_config"]["length_features"] is False
    assert set(m["head_l2"]) == {"agent", "complexity", "quality"}
    assert set(m["head_l2"].values()) <= set(meta["training_config"]["head_l2_grid"])
    protos = load_file(str(out / "prototypes.safetensors"))["prototypes"]
    assert protos.shape == (13, 384)
    md = result.asset_materializations_for_node("trained_adapter")[0].metadata
    assert "grpo_kept" in md and md["peer_benchmark"].value.startswith("absent")


def test_failing_quality_check_blocks(tiny_catalog_dir, tmp_path):
    result = _materialize(tmp_path / "data", _config(tiny_catalog_dir, tmp_path, min_val_accuracy=1.01),
                          raise_on_error=False, assets=TRAINING_ASSETS)
    evals = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evals["adapter_quality"] is False


def test_supervised_objective_alone_trains_the_adapter(tiny_catalog_dir, tmp_path):
    # both contrastive weights at 0: the triplets are not embedded, the LoRA learns from the agent-type and
    # (weighted) complexity cross-entropy alone
    cfg = _config(tiny_catalog_dir, tmp_path, triplet_weight=0.0, infonce_weight=0.0, complexity_weight=2.0,
                  supervised_batch=16, grpo_steps=0)
    assert _materialize(tmp_path / "data", cfg, assets=TRAINING_ASSETS).success
    out = tmp_path / "data" / "trained_adapter"
    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    assert all(float(v.abs().sum()) > 0 for k, v in adapter.items() if "lora_B" in k)
    meta = json.loads((out / "metadata.json").read_text())
    m = meta["metrics"]
    assert m["losses_finite"] and m["val_loss_first"] == 0.0  # no contrastive term to validate
    assert m["validation_agent_acc"] > m["baseline_val_prototype_acc"]
    assert meta["training_config"]["complexity_weight"] == 2.0


def test_no_loss_at_all_is_refused_before_training():
    from ruvtrain_pipeline.core.train.trainer import TrainSettings, train_router

    settings = TrainSettings(triplet_weight=0.0, infonce_weight=0.0, supervised_weight=0.0)
    with pytest.raises(ValueError, match="triplet_weight, infonce_weight and supervised_weight are all 0"):
        train_router("unused-model-path", {}, {}, None, settings)  # type: ignore[arg-type]


def test_grpo_with_claude_judge_through_local_server(tiny_catalog_dir, tmp_path):
    from ruvtrain_pipeline.resources import AnthropicResource

    from .messages_api_server import ServerState, messages_api_server

    key = "sk-ant-judge-dummy-0001"
    cfg = _config(tiny_catalog_dir, tmp_path, grpo_judge="claude", judge_max_tasks=40, judge_tasks_per_request=10)
    with messages_api_server(ServerState(script=["500"])) as (url, state):
        resource = AnthropicResource(api_key=key, base_url=url, cache_dir=str(tmp_path / "cache"), max_retries=0)
        result = _materialize(tmp_path / "data", cfg, anthropic=resource, assets=TRAINING_ASSETS)
        assert result.success
        calls = sum(1 for r in state.requests if r["path"] == "/v1/messages")
    md = result.asset_materializations_for_node("trained_adapter")[0].metadata
    assert md["grpo_judge"].value == "claude"
    assert md["judge_requests_sent"].value == 4 and calls == 4
    assert md["judge_failures"].value == {"server_error": 1}
    assert md["judge_tasks_judged"].value == 30
    assert md["judge_agreement_with_labels"].value >= 0.8  # the tiny texts name their agent type (noise aside)
    meta = json.loads((tmp_path / "data" / "trained_adapter" / "metadata.json").read_text())
    assert meta["metrics"]["grpo"]["judge"] == "claude" and meta["metrics"]["grpo"]["tasks"] == 30
    for p in (tmp_path / "cache").rglob("*"):
        if p.is_file():
            assert key not in p.read_text()


def test_same_seed_same_metrics(tiny_catalog_dir, tmp_path):
    metrics = []
    for run in ("a", "b"):
        data = tmp_path / run
        assert _materialize(data, _config(tiny_catalog_dir, tmp_path), assets=TRAINING_ASSETS).success
        m = json.loads((data / "trained_adapter" / "metadata.json").read_text())["metrics"]
        metrics.append({k: round(v, 3) for k, v in m.items() if isinstance(v, float) and not k.startswith("seconds")})
    assert metrics[0] == metrics[1]


def test_fit_heads_picks_the_l2_that_scores_best_on_validation_and_is_deterministic():
    import torch

    from ruvtrain_pipeline.core.train.heads import RoutingHeads, fit_heads

    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 2

    def draw(n: int) -> dict:
        # class 0 is the majority: a head flattened by a huge L2 predicts it for everything
        agent = torch.multinomial(torch.tensor([0.55, 0.15, 0.15, 0.15]), n, replacement=True, generator=g)
        emb = centers[agent] + torch.randn(n, 16, generator=g)
        return {"emb": emb, "agent": agent, "complexity": agent % 3,
                "quality": torch.full((n,), 0.8) + 0.01 * torch.randn(n, generator=g)}

    train, val = draw(400), draw(200)
    fits = []
    for _ in range(2):
        heads = RoutingHeads(16, 4, 3)
        curves = fit_heads(heads, train, val, l2_grid=(1e-4, 1e3), max_iter=100)
        fits.append({k: v.clone() for k, v in heads.state_dict().items()})
    # a huge L2 flattens the heads to the majority class: the small one wins on validation and is kept
    assert curves["val_agent_acc"][0] > 0.9 > 0.7 > curves["val_agent_acc"][1]
    assert curves["chosen_l2_agent"] == [1e-4] and curves["chosen_l2_complexity"] == [1e-4]
    with torch.no_grad():
        assert float((heads(val["emb"])[0].argmax(-1) == val["agent"]).float().mean()) == curves["val_agent_acc"][0]
    assert all(torch.equal(fits[0][k], fits[1][k]) for k in fits[0])
    with pytest.raises(ValueError, match="at least one"):
        fit_heads(RoutingHeads(16, 4, 3), train, val, l2_grid=(), max_iter=10)


def test_adapter_config_bytes_do_not_depend_on_the_string_hash_seed(tmp_path):
    # peft writes target_modules from a set, in the order of the process's string hash (PYTHONHASHSEED): the same
    # config gave different adapter_config.json bytes from run to run until save_trained sorted it
    import subprocess
    import sys

    script = (
        "import sys; from pathlib import Path; from peft import LoraConfig; "
        "from ruvtrain_pipeline.core.train.trainer import canonical_adapter_config; "
        "out = Path(sys.argv[1]); "
        "LoraConfig(r=8, target_modules=['query', 'key', 'value', 'dense', 'intermediate.dense']).save_pretrained(out); "
        "raw = (out / 'adapter_config.json').read_text(); canonical_adapter_config(out); print(raw)"
    )
    raw, canonical = set(), set()
    for hash_seed in range(3):
        out = tmp_path / str(hash_seed)
        proc = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONHASHSEED": str(hash_seed)}, check=True)
        raw.add(json.dumps(json.loads(proc.stdout)["target_modules"]))
        canonical.add((out / "adapter_config.json").read_bytes())
    assert len(raw) > 1, "peft wrote the same target_modules order under every hash seed (nothing to canonicalize)"
    assert len(canonical) == 1
    modules = json.loads(next(iter(canonical)))["target_modules"]
    assert modules == sorted(modules) and len(modules) == 5


def test_routing_supervision_weights_the_complexity_term():
    import torch
    import torch.nn.functional as F

    from ruvtrain_pipeline.core.train.losses import routing_supervision_loss

    g = torch.Generator().manual_seed(0)
    a_logits, c_logits = torch.randn(6, 13, generator=g), torch.randn(6, 3, generator=g)
    agent, cx = torch.tensor([0, 3, 5, 12, 7, 1]), torch.tensor([0, 1, 2, 2, 1, 0])
    ce_a, ce_c = F.cross_entropy(a_logits, agent), F.cross_entropy(c_logits, cx)
    assert torch.isclose(routing_supervision_loss(a_logits, c_logits, agent, cx), ce_a + ce_c)
    assert torch.isclose(routing_supervision_loss(a_logits, c_logits, agent, cx, 3.0), ce_a + 3 * ce_c)
    assert torch.isclose(routing_supervision_loss(a_logits, c_logits, agent, cx, 0.0), ce_a)
