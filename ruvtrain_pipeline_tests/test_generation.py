"""Base generation, augmentation and splits on a tiny catalog (core only, no Dagster)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ruvtrain_pipeline.core.augment import AugmentSettings, augment_examples, load_augment_data
from ruvtrain_pipeline.core.catalog import load_catalog
from ruvtrain_pipeline.core.schema import UNFILLED_RE, validate_examples, write_jsonl
from ruvtrain_pipeline.core.splits import SplitRatios, assign_splits, deviation_tolerance, split_report
from ruvtrain_pipeline.core.templates import GenerationError, compile_templates, generate_base_examples
from ruvtrain_pipeline_tests.conftest import write_tiny_catalog


def _base(catalog, n=30, seed=1):
    return generate_base_examples(compile_templates(catalog), n, np.random.default_rng(seed))


def _augment(catalog, base, seed=2, **kw):
    data = load_augment_data(complexities=catalog.complexities)
    return augment_examples(base, compile_templates(catalog), data, AugmentSettings(**kw), np.random.default_rng(seed))


def test_base_counts_unique_and_filled(tiny_catalog):
    df = _base(tiny_catalog, 30)
    counts = dict(df.group_by("agent_type").len().iter_rows())
    assert counts == {a: 30 for a in tiny_catalog.agent_types}
    assert df["input"].n_unique() == df.height
    assert not df["input"].str.contains(UNFILLED_RE).any()
    assert not df["input"].str.contains(r"[{}]").any() and not df["context"].str.contains(r"[{}]").any()
    assert validate_examples(df, tiny_catalog) == []
    # balanced over complexities (the tiny catalog has one template per complexity)
    per = df.group_by("agent_type", "complexity").len()["len"]
    assert per.min() == per.max() == 10
    assert df["group_id"].n_unique() == df.height


def test_same_seed_same_bytes_other_seed_differs(tiny_catalog, tmp_path):
    paths = []
    for i, seed in enumerate((5, 5, 6)):
        base = _base(tiny_catalog, 20, seed)
        aug = _augment(tiny_catalog, base, seed + 100).examples
        p = tmp_path / f"run{i}.jsonl"
        write_jsonl(aug, p)
        paths.append(p.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]


def test_cover_templates_uses_every_template_when_the_quota_covers_its_stratum():
    """With cover_templates, templates are taken round-robin within a stratum: with the shipped catalog and a quota of
    three times its largest stratum per agent type (so every stratum's quota covers its templates), every template
    renders at least once. The weighted draw leaves a seed-dependent share out."""
    from ruvtrain_pipeline.core.catalog import CATALOG_DIR

    catalog = load_catalog(CATALOG_DIR)
    ct = compile_templates(catalog)
    per_stratum = {}
    for t in catalog.templates:
        per_stratum.setdefault((t.agent_type, t.complexity), []).append(t.id)
    per_agent = 3 * max(len(v) for v in per_stratum.values())  # the premise: each stratum's quota covers it
    used = {}
    for seed in (42, 7):
        df = generate_base_examples(ct, per_agent, np.random.default_rng(seed), cover_templates=True)
        assert df["template_id"].n_unique() == len(catalog.templates)
        uses = df["template_id"].value_counts()["count"]
        assert uses.max() <= 2  # no template is used twice before every template of its stratum is used once
        weighted = generate_base_examples(ct, per_agent, np.random.default_rng(seed))
        used[seed] = set(weighted["template_id"])
        assert weighted.height == df.height and len(used[seed]) < 0.8 * len(catalog.templates)
    assert used[42] != used[7]


def test_exhausted_template_space_is_a_clear_error(tiny_catalog):
    with pytest.raises(GenerationError, match=r"agent type '.*', complexity '.*' .* cannot produce .* distinct inputs"):
        _base(tiny_catalog, 3_000_000)


def test_augmentations_change_text_and_labels_consistently(tiny_catalog):
    base = _base(tiny_catalog, 30)
    res = _augment(tiny_catalog, base)
    df = res.examples
    assert validate_examples(df, tiny_catalog) == []
    assert df["input"].n_unique() == df.height
    originals = dict(base.select("group_id", "input").iter_rows())
    orig_rows = {r["group_id"]: r for r in base.iter_rows(named=True)}
    for row in df.filter(pl.col("augmentation") != "base").iter_rows(named=True):
        assert row["input"] != originals[row["group_id"]]
        src = orig_rows[row["group_id"]]
        if row["augmentation"] == "complexity":
            assert row["complexity"] != src["complexity"]
            cx = tiny_catalog.complexities
            assert abs(cx.index(row["complexity"]) - cx.index(src["complexity"])) == 1
        elif row["augmentation"] == "domain":
            assert row["domain"] != src["domain"]
            assert row["complexity"] == src["complexity"]
        else:
            assert (row["domain"], row["complexity"]) == (src["domain"], src["complexity"])
        assert row["agent_type"] == src["agent_type"]
    # at least two paraphrases per example are produced by default
    assert res.produced["paraphrase"] == 2 * base.height
    kinds = set(df["augmentation"].unique())
    assert kinds == {"base", "paraphrase", "complexity", "domain", "noise"}


def test_quality_tiers(tiny_catalog):
    df = _augment(tiny_catalog, _base(tiny_catalog, 30)).examples
    tiers = {"base": (0.80, 0.96), "paraphrase": (0.85, 0.90), "complexity": (0.83, 0.88),
             "domain": (0.80, 0.85), "noise": (0.80, 0.85)}
    for kind, (lo, hi) in tiers.items():
        q = df.filter(pl.col("augmentation") == kind)["quality_score"]
        assert q.min() >= lo and q.max() <= hi, kind


def test_duplicates_are_filtered_and_counted(tiny_catalog):
    base = _base(tiny_catalog, 30)
    doubled = pl.concat([base, base.with_columns(pl.col("group_id") + "-copy")])
    res = _augment(tiny_catalog, doubled)
    assert res.rejected.get("duplicate", 0) >= base.height
    assert res.examples["input"].n_unique() == res.examples.height


def test_grouped_stratified_split(tiny_catalog):
    df = _augment(tiny_catalog, _base(tiny_catalog, 150)).examples
    ratios = SplitRatios()
    out = assign_splits(df, ratios, np.random.default_rng(3), unit="group")
    rep = split_report(out, ratios, unit="group")
    assert rep["leaked_groups"] == 0
    assert out.group_by("group_id").agg(pl.col("split").n_unique())["split"].max() == 1
    # 50 groups per stratum -> whole-group rounding stays within 2 points
    assert rep["max_stratum_deviation_units"] <= 0.02
    # per-example units put re-filled copies of one template in several splits
    assert rep["templates_in_several_splits"] > 0
    total = sum(rep["rows_per_split"].values())
    assert abs(rep["rows_per_split"]["train"] / total - 0.70) < 0.03
    again = assign_splits(df, ratios, np.random.default_rng(3), unit="group")
    assert out.equals(again)


def test_template_split_keeps_every_template_in_one_split(tmp_path):
    catalog = load_catalog(write_tiny_catalog(tmp_path / "catalog", per_agent=21))  # 7 templates per stratum
    df = _augment(catalog, _base(catalog, 150)).examples
    ratios = SplitRatios()
    out = assign_splits(df, ratios, np.random.default_rng(3))
    rep = split_report(out, ratios)
    assert rep["split_unit"] == "template"
    assert rep["leaked_groups"] == 0 and rep["templates_in_several_splits"] == 0
    assert out.group_by("template_id").agg(pl.col("split").n_unique())["split"].max() == 1
    assert set(out["split"].unique()) == {"train", "validation", "test"}
    assert rep["max_stratum_deviation_units"] <= deviation_tolerance(rep["smallest_stratum_units"])
    assert out.equals(assign_splits(df, ratios, np.random.default_rng(3)))
    with pytest.raises(ValueError, match="split unit"):
        assign_splits(df, ratios, np.random.default_rng(3), unit="row")


def test_bad_ratios_rejected():
    with pytest.raises(ValueError, match="sum to 1"):
        SplitRatios(0.8, 0.15, 0.15).as_array()


def test_read_jsonl_round_trip_and_malformed_lines(tiny_catalog, tmp_path):
    from ruvtrain_pipeline.core.schema import SchemaError, read_jsonl

    df = _base(tiny_catalog, 6)
    good = tmp_path / "good.jsonl"
    write_jsonl(df, good)
    assert read_jsonl(good, tiny_catalog).equals(df.select(read_jsonl(good, tiny_catalog).columns))
    lines = good.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join([lines[0], "{oops", *lines[1:]]) + "\n")
    with pytest.raises(SchemaError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl(bad, tiny_catalog)
    bad.write_text(lines[0] + "\n" + lines[1].replace('"template_id"', '"tmpl"') + "\n")
    with pytest.raises(SchemaError, match=r"bad\.jsonl:2: missing field 'metadata.template_id'"):
        read_jsonl(bad, tiny_catalog)


def test_peer_loader_names_a_malformed_line(tmp_path):
    from ruvtrain_pipeline.core.peer import load_peer_cases

    assert load_peer_cases(tmp_path / "absent") is None
    (tmp_path / "cases.jsonl").write_text('{"task": "a", "expected_agent": "coder"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"cases\.jsonl:2: expected a JSON object"):
        load_peer_cases(tmp_path)
