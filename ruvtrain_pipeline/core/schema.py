"""Typed records of the chain: the example frame, its polars schema, the seed JSONL shape, and validation.

Internal frames are flat (one column per field, plus slot indices for re-rendering); files written for users keep
the seed JSONL shape: `input`, `context`, `output_agent`, `metadata{...}`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from .catalog import Catalog
from .jsonl import json_lines

# "feedback": rows from routing feedback (feedback_examples), not generated
AUGMENTATION_KINDS = ("base", "paraphrase", "complexity", "domain", "noise", "feedback")
SPLITS = ("train", "validation", "test")
UNFILLED_RE = r"\{[A-Za-z_][A-Za-z0-9_]*\}"
MAX_SLOTS = 8  # slot-index columns s0..s7 carried for re-rendering (domain transfer)

EXAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "input": pl.String(),
    "context": pl.String(),
    "output_agent": pl.String(),
    "category": pl.String(),
    "complexity": pl.String(),
    "domain": pl.String(),
    "expected_model": pl.String(),
    "quality_score": pl.Float64(),
    "tags": pl.List(pl.String()),
    "agent_type": pl.String(),
    "template_id": pl.String(),
    "augmentation": pl.String(),
    "group_id": pl.String(),
}
SLOT_COLUMNS = [f"s{i}" for i in range(MAX_SLOTS)]
WORKING_SCHEMA: dict[str, pl.DataType] = EXAMPLE_SCHEMA | {c: pl.UInt32() for c in SLOT_COLUMNS}
METADATA_FIELDS = (
    "category",
    "complexity",
    "domain",
    "expected_model",
    "quality_score",
    "tags",
    "agent_type",
    "template_id",
    "augmentation",
    "group_id",
)


class SchemaError(ValueError):
    """A frame or file does not match the example schema; the message names the file, row or field."""


def category_label(category: str) -> str:
    """Seed spelling of a category in metadata ("coder" -> "Coder")."""
    return category[:1].upper() + category[1:]


def to_seed_records(df: pl.DataFrame) -> pl.DataFrame:
    """Flat example frame -> seed JSONL shape (metadata nested as a struct)."""
    return df.select(
        "input",
        "context",
        "output_agent",
        pl.struct([pl.col(f) for f in METADATA_FIELDS]).alias("metadata"),
    )


def from_seed_records(df: pl.DataFrame) -> pl.DataFrame:
    """Seed JSONL shape -> flat example frame."""
    return df.select("input", "context", "output_agent", pl.col("metadata").struct.unnest()).select(
        list(EXAMPLE_SCHEMA)
    )


def validate_examples(df: pl.DataFrame, catalog: Catalog, *, source: str = "frame") -> list[str]:
    """Every problem with an example frame, as messages naming the field (and first offending row)."""
    problems: list[str] = []
    for name, dtype in EXAMPLE_SCHEMA.items():
        if name not in df.columns:
            problems.append(f"{source}: missing field '{name}'")
        elif df.schema[name] != dtype:
            problems.append(f"{source}: field '{name}' has type {df.schema[name]}, expected {dtype}")
    if problems:
        return problems

    def first_bad(mask: pl.Series, what: str) -> None:
        n = int(mask.sum())
        if n:
            row = int(mask.arg_true()[0])
            problems.append(f"{source}: {n} row(s) with {what} (first at row {row})")

    first_bad(df["input"].str.strip_chars().str.len_chars() == 0, "empty 'input'")
    first_bad(df["input"].str.contains(UNFILLED_RE) | df["context"].str.contains(UNFILLED_RE), "unfilled {slot}")
    first_bad(~df["agent_type"].is_in(catalog.agent_types), "unknown 'agent_type'")
    first_bad(~df["complexity"].is_in(catalog.complexities), "unknown 'complexity'")
    first_bad(~df["domain"].is_in(catalog.domains), "unknown 'domain'")
    first_bad(~df["augmentation"].is_in(AUGMENTATION_KINDS), "unknown 'augmentation'")
    first_bad(~df["quality_score"].is_between(0.0, 1.0), "'quality_score' outside 0-1")
    agent_cat = pl.DataFrame(
        {"agent_type": catalog.agent_types, "_cat": [catalog.category_of(a) for a in catalog.agent_types]}
    )
    joined = df.select("agent_type", "output_agent", "category").join(agent_cat, on="agent_type", how="left")
    first_bad(
        (joined["_cat"] != joined["output_agent"]).fill_null(True),
        "'output_agent' not the category of 'agent_type'",
    )
    first_bad(
        (joined["category"] != joined["_cat"].map_elements(category_label, return_dtype=pl.String)).fill_null(True),
        "'category' not matching 'output_agent'",
    )
    problems.extend(check_expected_models(df, catalog, source=source))
    return problems


def routing_frame(catalog: Catalog) -> pl.DataFrame:
    rows = [(cat, cx, catalog.model_for(cat, cx)) for cat in catalog.categories for cx in catalog.complexities]
    return pl.DataFrame(rows, schema=["output_agent", "complexity", "_model"], orient="row")


def check_expected_models(df: pl.DataFrame, catalog: Catalog, *, source: str = "frame") -> list[str]:
    joined = df.select("output_agent", "complexity", "expected_model").join(
        routing_frame(catalog), on=["output_agent", "complexity"], how="left"
    )
    bad = (joined["_model"] != joined["expected_model"]).fill_null(True)
    n = int(bad.sum())
    if n:
        return [f"{source}: {n} row(s) whose 'expected_model' disagrees with routing.yaml (first at row "
                f"{int(bad.arg_true()[0])})"]
    return []


def write_jsonl(df: pl.DataFrame, path: Path) -> None:
    """Seed-format JSONL, deterministic bytes (one object per line, fixed key order)."""
    to_seed_records(df.select(list(EXAMPLE_SCHEMA))).write_ndjson(path)


def read_jsonl(path: Path, catalog: Catalog) -> pl.DataFrame:
    """Read a seed-format JSONL file; a malformed line is reported with its line number."""
    rows: list[dict[str, Any]] = []
    for lineno, obj, error in json_lines(path):
        if error:
            raise SchemaError(f"{path}:{lineno}: {error}")
        for key in ("input", "context", "output_agent", "metadata"):
            if not isinstance(obj, dict) or key not in obj:
                raise SchemaError(f"{path}:{lineno}: missing field '{key}'")
        meta = obj["metadata"]
        missing = [f for f in METADATA_FIELDS if not isinstance(meta, dict) or f not in meta]
        if missing:
            raise SchemaError(f"{path}:{lineno}: missing field 'metadata.{missing[0]}'")
        rows.append({k: obj[k] for k in ("input", "context", "output_agent")} | {f: meta[f] for f in METADATA_FIELDS})
    df = pl.DataFrame(rows, schema=EXAMPLE_SCHEMA, orient="row")
    problems = validate_examples(df, catalog, source=str(path))
    if problems:
        raise SchemaError("; ".join(problems))
    return df
