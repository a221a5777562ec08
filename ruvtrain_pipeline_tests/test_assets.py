"""The dataset assets materialized for real (in-process) on a tiny catalog: files, checks, blocking, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance, materialize

from ruvtrain_pipeline.definitions import all_assets, defs
from ruvtrain_pipeline.resources import AnthropicResource, BaseEncoder, DvcResource, PipelineStorage

DATASET_ASSETS = ["seed_templates", "base_examples", "augmented_examples", "hard_negatives", "dataset_splits"]


def run_config(catalog_dir: Path, per_agent: int = 12, seed: int = 42, min_templates: int = 3,
               provider: str = "template") -> dict:
    return {
        "ops": {
            "seed_templates": {"config": {"catalog_dir": str(catalog_dir), "min_templates_per_agent": min_templates}},
            "base_examples": {"config": {"examples_per_agent": per_agent, "seed": seed}},
            "augmented_examples": {"config": {"seed": seed}},
            "hard_negatives": {"config": {"seed": seed, "provider": provider}},
            # the tiny catalog has one template per stratum: split by base-example group so every split has rows
            "dataset_splits": {"config": {"seed": seed, "unit": "group"}},
        }
    }


def _materialize(data_dir: Path, config: dict, instance: DagsterInstance | None = None, raise_on_error=True,
                 anthropic: AnthropicResource | None = None, assets=None):
    return materialize(
        assets or [a for a in all_assets if any(k.to_user_string() in DATASET_ASSETS for k in a.keys)],
        resources={"storage": PipelineStorage(data_dir=str(data_dir)), "dvc": DvcResource(),
                   "anthropic": anthropic or AnthropicResource(api_key=None),
                   "encoder": BaseEncoder()},
        run_config=config,
        instance=instance,
        raise_on_error=raise_on_error,
    )


def test_definitions_load_and_graph_is_the_chain():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert set(DATASET_ASSETS) <= keys
    deps = {k.to_user_string(): {p.to_user_string() for p in graph.get(k).parent_keys} for k in graph.get_all_asset_keys()}
    assert deps["base_examples"] == {"seed_templates"}
    assert deps["augmented_examples"] == {"base_examples"}
    assert deps["hard_negatives"] == {"augmented_examples"}
    assert deps["dataset_splits"] == {"augmented_examples", "hard_negatives", "feedback_examples"}


def test_full_dataset_chain_materializes_with_passing_checks(tiny_catalog_dir, tmp_path):
    data = tmp_path / "data"
    result = _materialize(data, run_config(tiny_catalog_dir, per_agent=30))
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) >= 16
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in evaluations if not e.passed]
    assert failed == []
    mats = {m.asset_key.to_user_string(): m for m in result.get_asset_materialization_events()}
    assert set(mats) == set(DATASET_ASSETS)
    meta = result.asset_materializations_for_node("augmented_examples")[0].metadata
    assert meta["dagster/row_count"].value > 30 * 13 * 4
    assert "preview" in meta and "rejected_by_reason" in meta
    out = data / "dataset_splits"
    for name in ("full.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "full.json", "stats.json",
                 "README.md", "data/train.parquet", "data/validation.parquet", "data/test.parquet",
                 "triplets_train.jsonl", "triplets/train.parquet", "split_report.json"):
        assert (out / name).exists(), name
    first = json.loads((out / "train.jsonl").read_text().splitlines()[0])
    assert set(first) == {"input", "context", "output_agent", "metadata"}
    assert {"category", "complexity", "domain", "expected_model", "quality_score", "tags", "agent_type",
            "template_id", "augmentation", "group_id"} <= set(first["metadata"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["total_examples"] == sum(stats["by_split"].values())
    assert set(stats) >= {"by_category", "by_complexity", "by_model", "by_domain", "by_agent_type", "avg_quality"}
    train = pl.read_parquet(out / "data" / "train.parquet")
    assert train.height == stats["by_split"]["train"]
    # no group in two splits; triplets follow their anchor's group
    groups = {s: set(pl.read_ndjson(out / f"{s}.jsonl")["metadata"].struct.field("group_id")) for s in
              ("train", "validation", "test")}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    trip_test = set(pl.read_ndjson(out / "triplets_test.jsonl")["group_id"])
    assert trip_test <= groups["test"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "path: data/train.parquet" in card
    # Hugging Face `datasets` reads the Parquet export both ways the card promises
    import datasets

    cache = str(tmp_path / "hf_cache")
    by_dir = datasets.load_dataset("parquet", data_dir=str(out / "data"), cache_dir=cache)
    by_card = datasets.load_dataset(str(out), cache_dir=cache)
    trip = datasets.load_dataset(str(out), name="triplets", cache_dir=cache)
    for split in ("train", "validation", "test"):
        assert by_dir[split].num_rows == by_card[split].num_rows == stats["by_split"][split]
        assert trip[split].num_rows > 0
    assert by_card["train"][0]["metadata"]["agent_type"] in {"coder", "tester", "planner", "reviewer", "debugger",
        "refactorer", "optimizer", "devops", "researcher", "documenter", "api-docs", "security-architect", "architect"}


def test_same_seed_byte_identical_other_seed_differs(tiny_catalog_dir, tmp_path):
    digests = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        data = tmp_path / run
        assert _materialize(data, run_config(tiny_catalog_dir, seed=seed)).success
        digests.append({p.relative_to(data).as_posix(): p.read_bytes() for p in data.rglob("*.jsonl")})
    assert digests[0] == digests[1]
    assert digests[0]["dataset_splits/full.jsonl"] != digests[2]["dataset_splits/full.jsonl"]


def test_failing_check_blocks_downstream(tiny_catalog_dir, tmp_path):
    instance = DagsterInstance.ephemeral()
    result = _materialize(tmp_path / "data", run_config(tiny_catalog_dir, min_templates=40), instance=instance,
                          raise_on_error=False)
    assert not result.success
    evals = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evals == {"templates_per_agent": False}
    assert instance.get_latest_materialization_event(AssetKey("base_examples")) is None
    assert not (tmp_path / "data" / "base_examples").exists()


def test_bad_catalog_fails_and_keeps_previous_output(tiny_catalog_dir, tmp_path):
    data = tmp_path / "data"
    assert _materialize(data, run_config(tiny_catalog_dir)).success
    before = (data / "seed_templates" / "catalog.json").read_bytes()
    bad = tiny_catalog_dir / "templates" / "coder.yaml"
    bad.write_text(bad.read_text().replace("complexity: Simple", "complexity: Trivial", 1))
    result = _materialize(data, run_config(tiny_catalog_dir), raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "coder.yaml:3: template 'coder-000': complexity 'Trivial' is not one of" in failure
    assert (data / "seed_templates" / "catalog.json").read_bytes() == before
    assert not [p for p in data.iterdir() if p.name.startswith(".")]


def test_downstream_without_upstream_says_what_to_do(tmp_path):
    from ruvtrain_pipeline.assets.dataset import base_examples

    result = materialize([base_examples], resources={"storage": PipelineStorage(data_dir=str(tmp_path)),
                                                     "dvc": DvcResource()},
                         raise_on_error=False)  # only the resources base_examples needs
    assert not result.success
    msg = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert "materialize 'seed_templates' first" in msg


@pytest.mark.parametrize("asset_name", DATASET_ASSETS)
def test_every_asset_has_blocking_checks(asset_name):
    graph = defs.resolve_asset_graph()
    specs = [graph.get_check_spec(k) for k in graph.asset_check_keys if k.asset_key == AssetKey(asset_name)]
    assert specs and all(s.blocking for s in specs)
    assert graph.get(AssetKey(asset_name)).group_name == "dataset"
