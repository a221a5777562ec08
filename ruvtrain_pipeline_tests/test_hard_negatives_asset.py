"""hard_negatives through Dagster: the claude provider end to end against the local Messages API server (dummy key),
and the offline default (auto without a key = mined on the real MiniLM encoder)."""

from __future__ import annotations

import json

import polars as pl
import pytest
from dagster import DagsterInstance

from ruvtrain_pipeline.assets.dataset import dataset_splits, hard_negatives
from ruvtrain_pipeline.core.io import dir_digest
from ruvtrain_pipeline.resources import AnthropicResource

from .messages_api_server import ServerState, messages_api_server
from .test_assets import _materialize, run_config

KEY = "sk-ant-dummy-SHOULD-NEVER-APPEAR-42"


def _all_text(instance: DagsterInstance) -> str:
    from dagster._serdes import serialize_value

    entries = [e for run in instance.get_runs() for e in instance.all_logs(run.run_id)]
    assert entries, "no events recorded"
    return "\n".join(serialize_value(e) for e in entries)


def test_claude_provider_end_to_end_with_cache(tiny_catalog_dir, tmp_path):
    data = tmp_path / "data"
    cache = tmp_path / "anthropic_cache"
    instance = DagsterInstance.ephemeral()
    config = run_config(tiny_catalog_dir, per_agent=12, provider="claude")
    config["ops"]["hard_negatives"]["config"] |= {"claude_items_per_request": 6,
                                                   "peer_benchmark_dir": str(tmp_path / "no_peer")}
    # a 429 and a 500 on the first requests: retried by the SDK, the run still succeeds
    with messages_api_server(ServerState(script=["429", "500"])) as (url, state):
        resource = AnthropicResource(api_key=KEY, base_url=url, cache_dir=str(cache), max_retries=2, timeout_s=5)
        result = _materialize(data, config, instance=instance, anthropic=resource)
        assert result.success
        meta = result.asset_materializations_for_node("hard_negatives")[0].metadata
        assert meta["provider"].value == "claude"
        assert meta["claude_requests_sent"].value == 10 and meta["claude_cache_hits"].value == 0
        assert meta["claude_output_tokens"].value > 0 and meta["claude_cost_usd"].value > 0
        assert meta["peer_benchmark"].value.startswith("absent")
        calls_after_first = state.message_calls
        assert calls_after_first == 12  # 10 requests + 2 retries
        # second materialization of hard_negatives + dataset_splits: everything from the cache, 0 requests
        sub = {"ops": {k: v for k, v in config["ops"].items() if k in ("hard_negatives", "dataset_splits")}}
        again = _materialize(data, sub, instance=instance, anthropic=resource,
                             assets=[hard_negatives, dataset_splits])
        assert again.success
        meta2 = again.asset_materializations_for_node("hard_negatives")[0].metadata
        assert meta2["claude_requests_sent"].value == 0 and meta2["claude_cache_hits"].value == 10
        assert state.message_calls == calls_after_first
    triplets = pl.read_parquet(data / "hard_negatives" / "triplets.parquet")
    claude_rows = triplets.filter(pl.col("source") == "claude")
    assert claude_rows.height == 60
    report = json.loads((data / "hard_negatives" / "report.json").read_text())
    assert abs(report["hard_ratio"] - 0.48) <= 0.05
    # Claude anchors are split too, each group in one split only
    parts = {s: pl.read_ndjson(data / "dataset_splits" / f"triplets_{s}.jsonl") for s in ("train", "validation", "test")}
    claude_groups = [set(p.filter(pl.col("source") == "claude")["group_id"]) for p in parts.values()]
    assert sum(len(g) for g in claude_groups) == 60
    assert not (claude_groups[0] & claude_groups[2]) and not (claude_groups[0] & claude_groups[1])
    # the key is nowhere: not in outputs, not in the cache, not in the run's event log (metadata + logs)
    for root in (data, cache):
        for p in root.rglob("*"):
            if p.is_file():
                assert KEY.encode() not in p.read_bytes(), p
    assert KEY not in _all_text(instance)


@pytest.mark.slow
def test_auto_without_key_mines_with_minilm(tiny_catalog_dir, tmp_path):
    data = tmp_path / "data"
    result = _materialize(data, run_config(tiny_catalog_dir, per_agent=21, provider="auto"))
    assert result.success
    meta = result.asset_materializations_for_node("hard_negatives")[0].metadata
    assert meta["provider"].value == "mined" and meta["provider_config"].value == "auto"
    assert abs(meta["hard_ratio"].value - 0.48) <= 0.05
    assert meta["mean_hard_similarity"].value > meta["mean_easy_similarity"].value
    tr = pl.read_ndjson(data / "dataset_splits" / "triplets_train.jsonl")
    assert tr["negative_text"].null_count() < tr.height
    split_meta = result.asset_materializations_for_node("dataset_splits")[0].metadata
    assert "negative_texts_dropped_cross_split" in split_meta
    # no example text from another split survives in a train triplet
    test_inputs = set(pl.read_ndjson(data / "dataset_splits" / "test.jsonl")["input"])
    assert not (set(tr["negative_text"].drop_nulls()) & test_inputs)
    assert not (set(tr["positive_text"].drop_nulls()) & test_inputs)
    # same config and seed again: both folders byte-identical (no timings inside), so their DVC hashes are too
    before = {a: dir_digest(data / a) for a in ("hard_negatives", "dataset_splits")}
    sub = run_config(tiny_catalog_dir, per_agent=21, provider="auto")
    sub = {"ops": {k: v for k, v in sub["ops"].items() if k in ("hard_negatives", "dataset_splits")}}
    again = _materialize(data, sub, assets=[hard_negatives, dataset_splits])
    assert again.success
    assert again.asset_materializations_for_node("hard_negatives")[0].metadata["seconds"].value > 0
    assert {a: dir_digest(data / a) for a in before} == before
