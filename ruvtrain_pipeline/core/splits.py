"""Grouped, stratified train/validation/test split of the augmented set.

A group is a base example and everything derived from it; whole groups are assigned, stratified on the base
example's agent type x complexity, so no paraphrase of a test example lands in train.

By default the unit assigned is the *template* (all groups rendered from one template go to one split): with
per-example units, a validation row is a re-filled copy of a template seen in training, so validation and test
measured template recall rather than generalization to new wordings (on the 2026-11 default data 118 of the 160
validation templates also had rows in train). `unit="group"` keeps the per-example split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from .schema import SPLITS


@dataclass(frozen=True)
class SplitRatios:
    train: float = 0.70
    validation: float = 0.15
    test: float = 0.15

    def as_array(self) -> np.ndarray:
        arr = np.array([self.train, self.validation, self.test], dtype=np.float64)
        if np.any(arr < 0) or not np.isclose(arr.sum(), 1.0):
            raise ValueError(f"split ratios must be non-negative and sum to 1, got {arr.tolist()}")
        return arr


def _largest_remainder(n: int, ratios: np.ndarray) -> np.ndarray:
    quotas = ratios * n
    counts = np.floor(quotas).astype(np.int64)
    rest = n - counts.sum()
    order = np.argsort(-(quotas - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


SPLIT_UNITS = ("template", "group")


def group_strata(examples: pl.DataFrame) -> pl.DataFrame:
    """One row per group: its stratum (base row's agent type x complexity) and its size in rows."""
    base = examples.filter(pl.col("augmentation") == "base").select(
        "group_id", "template_id", pl.concat_str("agent_type", pl.lit("|"), "complexity").alias("stratum")
    )
    sizes = examples.group_by("group_id").len("rows")
    return base.join(sizes, on="group_id", how="left").sort("group_id")


def assign_splits(examples: pl.DataFrame, ratios: SplitRatios, rng: np.random.Generator,
                  unit: str = "template") -> pl.DataFrame:
    """Add a `split` column; every group (and with unit 'template' every template) in exactly one split;
    per-stratum proportions of units as close as possible."""
    if unit not in SPLIT_UNITS:
        raise ValueError(f"split unit must be one of {SPLIT_UNITS}, got {unit!r}")
    r = ratios.as_array()
    groups = group_strata(examples)
    orphans = examples.join(groups, on="group_id", how="anti")
    if orphans.height:
        raise ValueError(f"{orphans.height} row(s) belong to a group without a base example "
                         f"(first group_id '{orphans['group_id'][0]}')")
    key = "template_id" if unit == "template" else "group_id"
    units = groups.unique(key, keep="first").sort(key)
    assignment: list[pl.DataFrame] = []
    for stratum in sorted(units["stratum"].unique().to_list()):
        g = units.filter(pl.col("stratum") == stratum)
        counts = _largest_remainder(g.height, r)
        labels = np.repeat(np.array(SPLITS), counts)
        perm = rng.permutation(g.height)
        assignment.append(pl.DataFrame({key: g[key].gather(perm), "split": labels}))
    table = groups.select(*dict.fromkeys(["group_id", key])).join(pl.concat(assignment), on=key, how="left")
    table = table.select("group_id", "split")
    return examples.join(table, on="group_id", how="left", maintain_order="left")


def split_report(split_examples: pl.DataFrame, ratios: SplitRatios, unit: str = "template") -> dict[str, object]:
    """Leak counts and the largest per-stratum deviation from the target ratios, in rows and in split units
    (templates or groups, whichever `assign_splits` assigned)."""
    leaks = (
        split_examples.group_by("group_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1).height
    )
    generated = split_examples.filter(pl.col("template_id").is_not_null() & (pl.col("augmentation") != "feedback"))
    shared_templates = (
        generated.group_by("template_id").agg(pl.col("split").n_unique().alias("n")).filter(pl.col("n") > 1).height
    )
    key = "template_id" if unit == "template" else "group_id"
    groups = group_strata(split_examples).join(
        split_examples.select("group_id", "split").unique("group_id"), on="group_id"
    )
    units = groups.group_by(*dict.fromkeys([key, "stratum", "split"])).agg(pl.col("rows").sum())
    target = dict(zip(SPLITS, ratios.as_array().tolist(), strict=True))
    worst_rows = 0.0
    worst_units = 0.0
    smallest = None
    rows_by = units.group_by("stratum", "split").agg(pl.col("rows").sum(), pl.len().alias("units"))
    for stratum in rows_by["stratum"].unique().to_list():
        s = rows_by.filter(pl.col("stratum") == stratum)
        tot_rows = s["rows"].sum()
        tot_units = s["units"].sum()
        smallest = tot_units if smallest is None else min(smallest, tot_units)
        for split in SPLITS:
            row = s.filter(pl.col("split") == split)
            nr = int(row["rows"].sum()) if row.height else 0
            nu = int(row["units"].sum()) if row.height else 0
            worst_rows = max(worst_rows, abs(nr / tot_rows - target[split]))
            worst_units = max(worst_units, abs(nu / tot_units - target[split]))
    counts = dict(split_examples.group_by("split").len().iter_rows())
    return {
        "split_unit": unit,
        "leaked_groups": int(leaks),
        "templates_in_several_splits": int(shared_templates),
        "max_stratum_deviation_rows": round(worst_rows, 4),
        "max_stratum_deviation_units": round(worst_units, 4),
        "smallest_stratum_units": int(smallest or 0),
        "rows_per_split": {s: int(counts.get(s, 0)) for s in SPLITS},
    }


def deviation_tolerance(smallest_stratum_units: int, points: float = 0.02) -> float:
    """2 points, or the share of one unit in the smallest stratum when that is larger (whole units move)."""
    if smallest_stratum_units <= 0:
        return points
    return max(points, 1.0 / smallest_stratum_units)


def split_triplets(
    triplets: pl.DataFrame, group_split: pl.DataFrame, ratios: SplitRatios, rng: np.random.Generator
) -> tuple[pl.DataFrame, dict[str, int]]:
    """Give every triplet its anchor group's split; Claude-written anchors (groups of their own) are split per pair
    with the same ratios; example texts that belong to another split are dropped (the label stays)."""
    out = triplets.join(group_split, on="group_id", how="left", maintain_order="left")
    new_groups = out.filter(pl.col("split").is_null() & (pl.col("source") == "claude")).select("group_id", "pair")
    if new_groups.height:
        r = ratios.as_array()
        parts = []
        for pair in sorted(new_groups["pair"].unique().to_list()):
            g = new_groups.filter(pl.col("pair") == pair).unique("group_id").sort("group_id")
            labels = np.repeat(np.array(SPLITS), _largest_remainder(g.height, r))
            parts.append(pl.DataFrame({"group_id": g["group_id"].gather(rng.permutation(g.height)), "_s": labels}))
        extra = pl.concat(parts)
        out = out.join(extra, on="group_id", how="left", maintain_order="left").with_columns(
            pl.coalesce("split", "_s").alias("split")).drop("_s")
    info = {"claude_groups_split": int(new_groups["group_id"].n_unique()) if new_groups.height else 0}
    for side in ("positive", "negative"):
        other = group_split.rename({"group_id": f"{side}_group_id", "split": f"_{side}_split"})
        out = out.join(other, on=f"{side}_group_id", how="left", maintain_order="left")
        crossing = pl.col(f"{side}_text").is_not_null() & (pl.col(f"_{side}_split") != pl.col("split")).fill_null(True)
        info[f"{side}_texts_dropped_cross_split"] = int(out.select(crossing.sum()).item())
        out = out.with_columns(
            pl.when(crossing).then(None).otherwise(pl.col(f"{side}_text")).alias(f"{side}_text"),
            pl.when(crossing).then(None).otherwise(pl.col(f"{side}_group_id")).alias(f"{side}_group_id"),
        ).drop(f"_{side}_split")
    return out, info


FEEDBACK_SPLIT = "train"


def _text_key(col: str) -> pl.Expr:
    """Request text compared case- and whitespace-insensitively (a feedback request typed like a generated one)."""
    return pl.col(col).str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars()


def join_feedback(split_examples: pl.DataFrame, feedback: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    """Append feedback examples (augmentation 'feedback') to the train split only, after the generated rows.

    A feedback row whose request matches a generated row of any split (case and whitespace aside) is dropped, so
    feedback never duplicates a generated example nor carries a validation/test request into train; among feedback
    rows the same request is kept once (the first in the feedback file's order). With no feedback the frame is
    returned unchanged."""
    info = {"feedback_rows": feedback.height, "feedback_joined": 0, "feedback_duplicates_dropped": 0}
    if feedback.height == 0:
        return split_examples, info
    wrong = feedback.filter(pl.col("augmentation") != "feedback")
    if wrong.height:
        raise ValueError(f"{wrong.height} feedback row(s) whose augmentation is not 'feedback' (first "
                         f"'{wrong['augmentation'][0]}' for input {wrong['input'][0]!r})")
    generated = split_examples.select(_text_key("input").alias("_key")).unique()
    fresh = (
        feedback.with_columns(_text_key("input").alias("_key"))
        .join(generated, on="_key", how="anti", maintain_order="left")
        .unique("_key", keep="first", maintain_order=True)
        .drop("_key")
    )
    rows = fresh.with_columns(pl.lit(FEEDBACK_SPLIT).alias("split"))
    # slot indices (s0..s7) are for re-rendering generated rows; feedback rows have none
    rows = rows.with_columns([pl.lit(None, dtype=split_examples.schema[c]).alias(c)
                              for c in split_examples.columns if c not in rows.columns])
    info["feedback_joined"] = fresh.height
    info["feedback_duplicates_dropped"] = feedback.height - fresh.height
    return pl.concat([split_examples, rows.select(split_examples.columns).cast(split_examples.schema)]), info
