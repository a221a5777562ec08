"""trained_adapter through Dagster on a tiny config: real LoRA training of the real MiniLM encoder."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from ruvtrain_pipeline.definitions import all_assets

from .test_assets import _materialize, run_config

pytestmark = pytest.mark.slow

TINY_TRAIN = {
    "epochs": 2, "triplets_per_epoch": 64, "batch_size": 8, "learning_rate": 1e-3, "val_triplets": 24,
    "val_examples": 80, "prototype_per_agent": 4, "head_epochs": 15, "grpo_steps": 20, "grpo_group_size": 4,
    "max_seq_length": 32, "min_val_accuracy": 0.5, "patience": 3,
}


def _config(catalog_dir, tmp_path, seed=42, **train):
    cfg = run_config(catalog_dir, per_agent=21, provider="template")
    cfg["ops"]["trained_adapter"] = {"config": TINY_TRAIN | {"seed": seed,
                                                             "peer_benchmark_dir": str(tmp_path / "none")} | train}
    return cfg


def test_trained_adapter_end_to_end(tiny_catalog_dir, tmp_path):
    data = tmp_path / "data"
    result = _materialize(data, _config(tiny_catalog_dir, tmp_path), assets=all_assets)
    assert result.success
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
    assert heads["agent.weight"].shape == (13, 384)
    protos = load_file(str(out / "prototypes.safetensors"))["prototypes"]
    assert protos.shape == (13, 384)
    md = result.asset_materializations_for_node("trained_adapter")[0].metadata
    assert "grpo_kept" in md and md["peer_benchmark"].value.startswith("absent")


def test_failing_quality_check_blocks(tiny_catalog_dir, tmp_path):
    result = _materialize(tmp_path / "data", _config(tiny_catalog_dir, tmp_path, min_val_accuracy=1.01),
                          raise_on_error=False, assets=all_assets)
    evals = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evals["adapter_quality"] is False
