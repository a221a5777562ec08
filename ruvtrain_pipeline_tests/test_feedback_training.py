"""Feedback joins the next training set: dataset_splits appends the materialized feedback_examples to the train split
only, minus requests already generated; without feedback the split is byte-identical to one built without it."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetKey

from ruvtrain_pipeline.core.feedback import FeedbackLabels, load_feedback
from ruvtrain_pipeline.core.schema import EXAMPLE_SCHEMA, WORKING_SCHEMA
from ruvtrain_pipeline.core.splits import SplitRatios, assign_splits, join_feedback
from ruvtrain_pipeline.definitions import all_assets, defs

from .test_assets import DATASET_ASSETS, _materialize, run_config
from .test_feedback import _materialize_feedback, fb, write_lines

SPLIT_FILES = ("full.jsonl", "train.jsonl", "validation.jsonl", "test.jsonl", "full.json", "stats.json", "README.md",
               "data/train.parquet", "data/validation.parquet", "data/test.parquet", "split_report.json",
               "triplets_train.jsonl", "triplets/train.parquet")


def _split_bytes(data: Path) -> dict[str, bytes]:
    out = data / "dataset_splits"
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def _inputs(data: Path, split: str) -> list[str]:
    path = data / "dataset_splits" / f"{split}.jsonl"
    return [json.loads(line)["input"] for line in path.read_text().splitlines()]


def _rows(data: Path, split: str) -> list[dict]:
    path = data / "dataset_splits" / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- core
@pytest.fixture
def generated(real_catalog, rng) -> pl.DataFrame:
    """A small split frame in the working schema: base rows only, 7 groups per stratum (5/1/1 over the splits)."""
    rows = []
    for agent in ("coder", "planner"):
        cat = real_catalog.category_of(agent)
        for cx in real_catalog.complexities:
            for k in range(7):
                rows.append({"input": f"Generated {cx} request number {k} for the {agent}", "context": "",
                             "output_agent": cat, "category": cat.capitalize(), "complexity": cx,
                             "domain": real_catalog.domains[0], "expected_model": real_catalog.model_for(cat, cx),
                             "quality_score": 0.9, "tags": [agent], "agent_type": agent,
                             "template_id": f"{agent}-{cx}", "augmentation": "base",
                             "group_id": f"g-{agent}-{cx}-{k}"})
    df = pl.DataFrame(rows, schema=EXAMPLE_SCHEMA, orient="row").with_columns(
        [pl.lit(None, dtype=WORKING_SCHEMA[c]).alias(c) for c in WORKING_SCHEMA if c not in EXAMPLE_SCHEMA])
    return assign_splits(df, SplitRatios(), rng, unit="group")  # one template per stratum here


def _feedback_frame(tmp_path: Path, catalog, rows: list[dict]) -> pl.DataFrame:
    write_lines(tmp_path / "inbox" / "f.jsonl", rows)
    return load_feedback(tmp_path / "inbox", FeedbackLabels.from_catalog(catalog)).examples


def test_join_feedback_adds_train_rows_only_and_drops_generated_requests(generated, tmp_path, real_catalog):
    test_text = generated.filter(pl.col("split") == "test")["input"][0]
    val_text = generated.filter(pl.col("split") == "validation")["input"][0]
    feedback = _feedback_frame(tmp_path, real_catalog, [
        fb("the profile page crashes on save", correct_agent="debugger"),
        fb("  " + test_text.upper() + "  ", correct_agent="coder"),  # a test request, retyped: must not reach train
        fb(val_text.replace(" ", "   "), correct_agent="coder"),  # a validation request with extra spaces
        fb("The Profile Page   crashes on save", correct_agent="debugger"),  # same request as the first, recased
        fb("write docs for the billing API", correct_agent="api-docs", correct_tier="haiku"),
    ])
    assert feedback.height == 5
    joined, info = join_feedback(generated, feedback)
    assert info == {"feedback_rows": 5, "feedback_joined": 2, "feedback_duplicates_dropped": 3}
    assert joined.schema == generated.schema
    assert joined.head(generated.height).equals(generated)  # generated rows untouched, feedback after them
    added = joined.slice(generated.height)
    assert added["split"].to_list() == ["train", "train"]
    assert set(added["augmentation"]) == {"feedback"} and set(added["template_id"]) == {"feedback"}
    assert sorted(" ".join(t.lower().split()) for t in added["input"]) == ["the profile page crashes on save",
                                                                          "write docs for the billing api"]
    assert added.select(pl.col("s0").is_null().all()).item()
    for split in ("validation", "test"):
        assert joined.filter(pl.col("split") == split).equals(generated.filter(pl.col("split") == split))


def test_join_feedback_without_rows_returns_the_frame_unchanged(generated, tmp_path, real_catalog):
    empty = _feedback_frame(tmp_path, real_catalog, [])
    joined, info = join_feedback(generated, empty)
    assert joined is generated
    assert info == {"feedback_rows": 0, "feedback_joined": 0, "feedback_duplicates_dropped": 0}


def test_join_feedback_refuses_rows_that_are_not_feedback(generated):
    not_feedback = generated.head(1).select(list(EXAMPLE_SCHEMA)).with_columns(pl.lit("new request").alias("input"))
    with pytest.raises(ValueError, match="augmentation is not 'feedback'"):
        join_feedback(generated, not_feedback)


# ---------------------------------------------------------------- asset
def test_dataset_splits_depends_on_feedback_examples():
    parents = defs.resolve_asset_graph().get(AssetKey("dataset_splits")).parent_keys
    assert {p.to_user_string() for p in parents} == {"augmented_examples", "hard_negatives", "feedback_examples"}


DATASET_AND_FEEDBACK = [a for a in all_assets if any(k.to_user_string() in [*DATASET_ASSETS, "feedback_examples"]
                                                     for k in a.keys)]
SPLITS_ONLY = [a for a in all_assets if any(k.to_user_string() == "dataset_splits" for k in a.keys)]


def test_feedback_joins_the_train_split_and_only_it(tiny_catalog_dir, tmp_path):
    data, cfg = tmp_path / "data", run_config(tiny_catalog_dir, per_agent=21)  # 7 groups per stratum: all splits
    assert _materialize(data, cfg).success  # the chain, feedback never materialized
    before = _split_bytes(data)
    generated_test = _inputs(data, "test")[0]

    inbox = tmp_path / "inbox"
    write_lines(inbox / "2026-03.jsonl", [
        fb("the nightly export job hangs after the schema change", correct_agent="debugger", correct_tier="sonnet"),
        fb("draft the rollout plan for multi-region failover", routed_agent="coder", correct_agent="planner",
           correct_tier="opus"),
        fb(generated_test.lower(), correct_agent="coder"),  # a generated test request: dropped, never in train
        "not json",  # quarantined by feedback_examples, never reaches the split
    ])
    assert _materialize_feedback(data, inbox, catalog_dir=str(tiny_catalog_dir)).success
    split_cfg = {"ops": {"dataset_splits": cfg["ops"]["dataset_splits"]}}
    result = _materialize(data, split_cfg, assets=SPLITS_ONLY)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    meta = result.asset_materializations_for_node("dataset_splits")[0].metadata
    assert (meta["feedback_rows"].value, meta["feedback_joined"].value, meta["feedback_duplicates_dropped"].value) \
        == (3, 2, 1)

    train = _rows(data, "train")
    fed = [r for r in train if r["metadata"]["augmentation"] == "feedback"]
    assert sorted(r["input"] for r in fed) == ["draft the rollout plan for multi-region failover",
                                               "the nightly export job hangs after the schema change"]
    assert {r["input"]: r["metadata"]["agent_type"] for r in fed}["draft the rollout plan for multi-region failover"] \
        == "planner"
    for split in ("validation", "test"):
        assert not [r for r in _rows(data, split) if r["metadata"]["augmentation"] == "feedback"]
        assert (data / "dataset_splits" / f"{split}.jsonl").read_bytes() == before[f"{split}.jsonl"]
    # the generated rows of train are the same rows as before, the feedback comes after them
    assert [r for r in train if r["metadata"]["augmentation"] != "feedback"] == \
        [json.loads(line) for line in before["train.jsonl"].decode().splitlines()]
    stats = json.loads((data / "dataset_splits" / "stats.json").read_text())
    assert stats["by_augmentation"]["feedback"] == 2 and stats["by_split"]["train"] == len(train)
    assert pl.read_parquet(data / "dataset_splits" / "data" / "train.parquet").height == len(train)
    assert "feedback_examples" in (data / "dataset_splits" / "README.md").read_text()  # provenance names it

    # same config, seed and feedback: the same bytes
    with_feedback = _split_bytes(data)
    assert _materialize(data, split_cfg, assets=SPLITS_ONLY).success
    assert _split_bytes(data) == with_feedback

    # an empty inbox: feedback_examples materialized but empty, and the split is byte-identical to the one before
    assert _materialize_feedback(data, tmp_path / "empty_inbox").success
    assert _materialize(data, split_cfg, assets=SPLITS_ONLY).success
    assert _split_bytes(data) == before


def test_one_run_orders_feedback_before_the_split(tiny_catalog_dir, tmp_path):
    """In one run of both (the feedback retrain job, the quarterly retrain) feedback_examples runs first."""
    inbox = tmp_path / "inbox"
    write_lines(inbox / "a.jsonl", [fb("the nightly export job hangs after the schema change",
                                       correct_agent="debugger")])
    cfg = run_config(tiny_catalog_dir)
    cfg["ops"]["feedback_examples"] = {"config": {"feedback_dir": str(inbox), "catalog_dir": str(tiny_catalog_dir)}}
    result = _materialize(tmp_path / "data", cfg, assets=DATASET_AND_FEEDBACK)
    assert result.success
    order = [m.asset_key.to_user_string() for m in result.get_asset_materialization_events()]
    assert order.index("feedback_examples") < order.index("dataset_splits")
    assert "the nightly export job hangs after the schema change" in _inputs(tmp_path / "data", "train")
