"""The real `dagster asset materialize` command in a subprocess, as a user's CI runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_dagster_cli_materializes_dataset_chain(tmp_path: Path):
    data = tmp_path / "data"
    home = tmp_path / "dagster_home"
    home.mkdir()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {
        "base_examples": {"config": {"examples_per_agent": 21, "seed": 3}},
        "dataset_splits": {"config": {"seed": 3}},
        "trained_adapter": {"config": {"epochs": 1, "triplets_per_epoch": 32, "batch_size": 8, "val_triplets": 16,
                                       "val_examples": 64, "prototype_per_agent": 4, "grpo_steps": 5,
                                       "max_seq_length": 32, "min_val_accuracy": 0.3}},
        "gguf_export": {"config": {"verify_texts": 20, "quantizations": ["f32", "q8_0"]}},
        "evaluation_report": {"config": {"latency_requests": 5, "gguf_quantizations": ["q8_0"], "robustness_rows": 40}},
    }}))
    env = os.environ | {"DAGSTER_HOME": str(home), "RUVTRAIN_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run(
        [str(dagster), "asset", "materialize", "-m", "ruvtrain_pipeline.definitions", "--select", "*", "-c", str(config)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    stats = json.loads((data / "dataset_splits" / "stats.json").read_text())
    assert stats["by_agent_type"].keys() >= {"coder", "security-architect", "api-docs"}
    base = (data / "base_examples" / "examples.jsonl").read_text().splitlines()
    assert len(base) == 21 * 13
    assert all("{" not in json.loads(line)["input"] for line in base)
    for split in ("train", "validation", "test"):
        assert (data / "dataset_splits" / f"{split}.jsonl").stat().st_size > 0
    # the run is recorded in the persistent instance the UI reads
    assert (home / "history").exists() or (home / "storage").exists()
    # no key in the environment: the offline default (encoder-mined negatives) ran
    assert json.loads((data / "hard_negatives" / "report.json").read_text())["provider"] == "mined"
    # the whole chain ran, training and the llama.cpp-verified GGUF export included
    assert (data / "trained_adapter" / "adapter" / "adapter_model.safetensors").exists()
    assert (data / "gguf_export" / "router-encoder-q8_0.gguf").exists()
    metrics = json.loads((data / "evaluation_report" / "metrics.json").read_text())
    assert "realistic.hybrid.agent_acc" in metrics["headline"]
    # the first export goes to production (no champion yet), with its model card
    assert json.loads((data / "production_router" / "promotion.json").read_text())["previous_champion"] is None
    assert (data / "production_router" / "README.md").read_text().startswith("---\n")


def test_dagster_cli_claude_provider_against_local_server(tmp_path: Path):
    from .messages_api_server import messages_api_server

    key = "sk-ant-cli-dummy-key-77"
    data, home, cache = tmp_path / "data", tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"ops": {
        "base_examples": {"config": {"examples_per_agent": 21}},
        "hard_negatives": {"config": {"provider": "claude", "claude_items_per_request": 4}},
    }}))
    dagster = Path(sys.executable).parent / "dagster"
    with messages_api_server() as (url, state):
        env = os.environ | {"DAGSTER_HOME": str(home), "RUVTRAIN_DATA_DIR": str(data), "ANTHROPIC_API_KEY": key,
                            "RUVTRAIN_ANTHROPIC_BASE_URL": url, "RUVTRAIN_ANTHROPIC_CACHE": str(cache)}
        proc = subprocess.run(
            [str(dagster), "asset", "materialize", "-m", "ruvtrain_pipeline.definitions", "--select",
             "*dataset_splits", "-c", str(config)],
            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert state.message_calls == 10
    report = json.loads((data / "hard_negatives" / "report.json").read_text())
    assert report["provider"] == "claude" and report["claude"]["accepted"] == 40
    assert key not in proc.stdout + proc.stderr
    for root in (data, cache, home):
        for p in root.rglob("*"):
            if p.is_file():
                assert key.encode() not in p.read_bytes(), p
