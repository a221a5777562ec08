"""Augmentation: base examples -> augmented set (paraphrase, complexity variation, domain transfer, noise).

Every augmentation changes the text, not only the labels. All of it is polars string expressions over whole
columns; the random choices are numpy arrays drawn from one seeded generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from .catalog import CATALOG_DIR, CatalogError
from .schema import AUGMENTATION_KINDS, SLOT_COLUMNS, UNFILLED_RE, WORKING_SCHEMA
from .templates import CompiledTemplates, render

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AugmentSettings:
    paraphrases_per_example: int = 2
    complexity_variations: int = 1
    domain_transfers: int = 1
    noise_variants: int = 1


@dataclass
class AugmentData:
    quality_tiers: dict[str, tuple[float, float]]
    synonyms: list[list[str]]
    imperative_frames: list[str]
    neutral_frames: list[str]
    imperative_verbs: list[str]
    scope: dict[str, dict[str, list[str]]]
    filler: list[str]
    misspellings: dict[str, str]
    source: str = field(default="")


def load_augment_data(path: Path | str = CATALOG_DIR / "augment.yaml", complexities: list[str] | None = None) -> AugmentData:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"{path}: cannot read augmentation data: {exc}") from exc
    try:
        tiers = {k: (float(v[0]), float(v[1])) for k, v in raw["quality_tiers"].items()}
        para = raw["paraphrase"]
        data = AugmentData(
            quality_tiers=tiers,
            synonyms=[[str(w) for w in g] for g in para["synonyms"]],
            imperative_frames=list(para["imperative_frames"]),
            neutral_frames=list(para["neutral_frames"]),
            imperative_verbs=[str(v).lower() for v in para["imperative_verbs"]],
            scope={k: {kk: list(vv) for kk, vv in v.items()} for k, v in raw["complexity"].items()},
            filler=[str(w) for w in raw["noise"]["filler"]],
            misspellings={str(k): str(v) for k, v in raw["noise"]["misspellings"].items()},
            source=str(path),
        )
    except (KeyError, TypeError, IndexError) as exc:
        raise CatalogError(f"{path}: missing or malformed field {exc}") from exc
    for kind in ("paraphrase", "complexity", "domain", "noise"):
        lo, hi = data.quality_tiers.get(kind, (-1.0, -1.0))
        if not 0.0 <= lo <= hi <= 1.0:
            raise CatalogError(f"{path}: quality_tiers.{kind} must be [low, high] within 0-1")
    for g in data.synonyms:
        if len(g) < 2:
            raise CatalogError(f"{path}: synonym group {g} needs at least 2 entries")
    for f in data.imperative_frames + data.neutral_frames:
        if f.count("<request>") != 1:
            raise CatalogError(f"{path}: frame {f!r} must contain <request> exactly once")
    for cx in complexities or []:
        for key in ("prefixes", "suffixes", "context"):
            if not data.scope.get(cx, {}).get(key):
                raise CatalogError(f"{path}: complexity.{cx}.{key} is missing or empty")
    return data


def _out(df: pl.DataFrame) -> pl.DataFrame:
    """Working columns, plus the base-row index `_g` when the caller attached one."""
    return df.select([*WORKING_SCHEMA, *(["_g"] if "_g" in df.columns else [])])


def _tier_quality(template_quality: pl.Expr, tier: tuple[float, float]) -> pl.Expr:
    lo, hi = tier
    frac = ((template_quality - 0.90) / 0.06).clip(0.0, 1.0)
    return (lo + frac * (hi - lo)).round(3)


def _choose(options: list[str], idx: np.ndarray) -> pl.Series:
    return pl.Series(options, dtype=pl.String).gather(idx)


def _lower_first(text: pl.Expr) -> pl.Expr:
    """Lower-case the first letter unless the first word looks like an acronym or a name with capitals inside."""
    return (
        pl.when(text.str.contains(r"^[A-Z][a-z]"))
        .then(pl.concat_str(text.str.slice(0, 1).str.to_lowercase(), text.str.slice(1)))
        .otherwise(text)
    )


def _synonym_pass(text: pl.Expr, groups: list[list[str]], shift_of: int, copy: int) -> pl.Expr:
    pats: list[str] = []
    reps: list[str] = []
    for g in groups:
        n = len(g)
        s = 1 + (shift_of + copy) % (n - 1)
        for i, w in enumerate(g):
            pats.append(f" {w.lower()} ")
            reps.append(f" {g[(i + s) % n]} ")
    order = sorted(range(len(pats)), key=lambda i: -len(pats[i]))
    return text.str.replace_many([pats[i] for i in order], [reps[i] for i in order], ascii_case_insensitive=True)


def paraphrase(base: pl.DataFrame, data: AugmentData, copies: int, rng: np.random.Generator) -> pl.DataFrame:
    """Synonym replacement plus phrase restructuring (question / request frames); `copies` per example."""
    n = base.height
    if n == 0 or copies == 0:
        return base.clear()
    n_var = 3
    v0 = rng.integers(0, n_var, n)
    f_imp0 = rng.integers(0, len(data.imperative_frames), n)
    f_neu0 = rng.integers(0, len(data.neutral_frames), n)
    use_frame = rng.random((copies, n))
    verbs = "|".join(sorted({v for v in data.imperative_verbs}, key=len, reverse=True))
    imperative = pl.col("input").str.contains(rf"(?i)^(?:{verbs})\b") & ~pl.col("input").str.ends_with("?")
    padded = pl.concat_str(pl.lit(" "), pl.col("input"), pl.lit(" "))
    base = base.with_columns(imperative.alias("_imp"))
    imp = [f.split("<request>") for f in data.imperative_frames]
    neu = [f.split("<request>") for f in data.neutral_frames]
    # all copies stacked first; copy k of a row uses synonym variant (v0 + k) % n_var, so copies differ
    stacked = []
    for k in range(copies):
        fi = (f_imp0 + k) % len(imp)
        fn = (f_neu0 + k) % len(neu)
        stacked.append(base.hstack(pl.DataFrame({
            "_variant": (v0 + k) % n_var,
            "_imp_pre": _choose([p for p, _ in imp], fi),
            "_imp_post": _choose([q for _, q in imp], fi),
            "_neu_pre": _choose([p for p, _ in neu], fn),
            "_neu_post": _choose([q for _, q in neu], fn),
            "_frame": use_frame[k] < 0.7,
        })))
    full = pl.concat(stacked)
    # one synonym pass per variant over that variant's rows (row order is not needed downstream)
    df = pl.concat([
        full.filter(pl.col("_variant") == v).with_columns(
            _synonym_pass(padded, data.synonyms, v, 0).str.strip_chars(" ").alias("_syn"))
        for v in range(n_var)
    ])
    core = _lower_first(pl.col("_syn"))
    core_nopunct = core.str.replace(r"[.!]+$", "")
    framed = (
        pl.when(pl.col("_imp"))
        .then(pl.concat_str(pl.col("_imp_pre"), core_nopunct, pl.col("_imp_post")))
        .otherwise(
            pl.concat_str(
                pl.col("_neu_pre"),
                pl.when(pl.col("_neu_pre") == "").then(pl.col("_syn")).otherwise(core),
                pl.col("_neu_post"),
            )
        )
    )
    text = pl.when(pl.col("_frame") | (pl.col("_syn") == pl.col("input"))).then(framed).otherwise(pl.col("_syn"))
    return _out(df.with_columns(
        text.alias("input"),
        pl.lit("paraphrase").alias("augmentation"),
        _tier_quality(pl.col("quality_score"), data.quality_tiers["paraphrase"]).alias("quality_score"),
    ))


def vary_complexity(
    base: pl.DataFrame, data: AugmentData, catalog_complexities: list[str], routing: pl.DataFrame,
    copies: int, rng: np.random.Generator,
) -> pl.DataFrame:
    """Re-scope the request one step up or down in complexity; relabel complexity and expected model."""
    n = base.height
    if n == 0 or copies == 0:
        return base.clear()
    levels = catalog_complexities
    cur = base["complexity"].replace_strict({c: i for i, c in enumerate(levels)}, return_dtype=pl.Int64).to_numpy()
    first_dir = rng.integers(0, 2, n) * 2 - 1
    parts = []
    for k in range(copies):
        direction = first_dir * (1 if k % 2 == 0 else -1)
        tgt = cur + direction
        tgt = np.where((tgt < 0) | (tgt >= len(levels)), cur - direction, tgt)
        tgt = np.clip(tgt, 0, len(levels) - 1)
        tgt_names = np.array(levels)[tgt]
        pre_i = rng.integers(0, 6, n)
        suf_i = rng.integers(0, 6, n)
        ctx_i = rng.integers(0, 6, n)
        pre = np.empty(n, dtype=object)
        suf = np.empty(n, dtype=object)
        ctx = np.empty(n, dtype=object)
        for li, level in enumerate(levels):
            mask = tgt == li
            sc = data.scope[level]
            pre[mask] = np.array(sc["prefixes"], dtype=object)[pre_i[mask] % len(sc["prefixes"])]
            suf[mask] = np.array(sc["suffixes"], dtype=object)[suf_i[mask] % len(sc["suffixes"])]
            ctx[mask] = np.array(sc["context"], dtype=object)[ctx_i[mask] % len(sc["context"])]
        df = base.hstack(
                pl.DataFrame(
                    {
                        "_pre": pl.Series(pre, dtype=pl.String),
                        "_suf": pl.Series(suf, dtype=pl.String),
                        "_ctx": pl.Series(ctx, dtype=pl.String),
                        "_tgt": pl.Series(tgt_names, dtype=pl.String),
                    }
                )
        )
        body = pl.col("input").str.replace(r"[?.!]+$", "")
        end = pl.col("input").str.extract(r"([?.!]+)$").fill_null("")
        body = pl.when(pl.col("_pre") != "").then(_lower_first(body)).otherwise(body)
        df = df.with_columns(
            pl.concat_str(pl.col("_pre"), body, pl.col("_suf"), end).alias("input"),
            pl.col("_ctx").alias("context"),
            pl.col("_tgt").alias("complexity"),
            pl.lit("complexity").alias("augmentation"),
            _tier_quality(pl.col("quality_score"), data.quality_tiers["complexity"]).alias("quality_score"),
        )
        df = df.drop("expected_model").join(routing, on=["output_agent", "complexity"], how="left",
                                            maintain_order="left")
        parts.append(_out(df))
    return pl.concat(parts)


def transfer_domain(
    base: pl.DataFrame, ct: CompiledTemplates, data: AugmentData, copies: int, rng: np.random.Generator
) -> pl.DataFrame:
    """Re-fill the domain-keyed slots from another domain's vocabulary and relabel the domain."""
    catalog = ct.catalog
    tid_to_idx = {t: i for i, t in enumerate(ct.ids.tolist())}
    tmpl_all = base["template_id"].replace_strict(tid_to_idx, return_dtype=pl.Int64).to_numpy()
    eligible = ct.domain_keyed[tmpl_all]
    src = base.filter(pl.Series(eligible))
    tmpl = tmpl_all[eligible]
    n = src.height
    if n == 0 or copies == 0:
        return base.clear()
    n_dom = len(catalog.domains)
    cur = src["domain"].replace_strict({d: i for i, d in enumerate(catalog.domains)}, return_dtype=pl.Int64).to_numpy()
    first = rng.integers(0, n_dom - 1, n)
    slots = np.stack([src[c].to_numpy().astype(np.int64) for c in SLOT_COLUMNS], axis=1)
    parts = []
    for k in range(copies):
        new_dom = (cur + 1 + (first + k) % (n_dom - 1)) % n_dom
        sizes = ct.slot_size[tmpl[:, None], np.arange(len(SLOT_COLUMNS))[None, :], new_dom[:, None]]
        new_slots = slots % sizes
        inputs, contexts = render(ct, tmpl, new_dom, new_slots)
        df = src.with_columns(
            inputs.alias("input"),
            contexts.alias("context"),
            pl.Series(np.array(catalog.domains)[new_dom], dtype=pl.String).alias("domain"),
            pl.lit("domain").alias("augmentation"),
            _tier_quality(pl.col("quality_score"), data.quality_tiers["domain"]).alias("quality_score"),
            *[pl.Series(c, new_slots[:, i].astype(np.uint32)) for i, c in enumerate(SLOT_COLUMNS)],
        )
        parts.append(_out(df))
    return pl.concat(parts)


def add_noise(base: pl.DataFrame, data: AugmentData, copies: int, rng: np.random.Generator) -> pl.DataFrame:
    """Typos (adjacent swaps, dropped letters, common misspellings), lower-casing, and terse forms."""
    n = base.height
    if n == 0 or copies == 0:
        return base.clear()
    fill_pats = sorted({f" {w.lower()} " for w in data.filler}, key=len, reverse=True)
    miss_src = sorted(data.misspellings, key=len, reverse=True)
    parts = []
    for _ in range(copies):
        r = rng.random((6, n))
        # one lazy query per copy: polars runs the chained steps in a single pass
        df = base.lazy().with_columns(
            pl.Series("_lower", r[0] < 0.6),
            pl.Series("_terse", r[1] < 0.5),
            pl.Series("_swap", r[2]),
            pl.Series("_drop", r[3]),
            pl.Series("_drop_on", r[4] < 0.4),
            pl.Series("_misspell", r[5] < 0.5),
        )
        text = pl.col("input")
        text = pl.when(pl.col("_terse")).then(
            pl.concat_str(pl.lit(" "), text, pl.lit(" "))
            .str.replace_many(fill_pats, [" "] * len(fill_pats), ascii_case_insensitive=True)
            .str.replace_many(fill_pats, [" "] * len(fill_pats), ascii_case_insensitive=True)
            .str.strip_chars(" ")
            .str.replace(r"[.!]+$", "")
        ).otherwise(text)
        text = pl.when(pl.col("_lower")).then(text.str.to_lowercase()).otherwise(text)
        text = pl.when(pl.col("_misspell")).then(
            pl.concat_str(pl.lit(" "), text, pl.lit(" "))
            .str.replace_many([f" {w} " for w in miss_src], [f" {data.misspellings[w]} " for w in miss_src])
            .str.strip_chars(" ")
        ).otherwise(text)
        df = df.with_columns(text.alias("_t"))
        length = pl.col("_t").str.len_chars()
        # swap two adjacent characters somewhere after the first word
        pos = (pl.lit(1) + (pl.col("_swap") * (length - 3).clip(lower_bound=1)).floor().cast(pl.Int64))
        swapped = pl.concat_str(
            pl.col("_t").str.slice(0, pos),
            pl.col("_t").str.slice(pos + 1, 1),
            pl.col("_t").str.slice(pos, 1),
            pl.col("_t").str.slice(pos + 2),
        )
        df = df.with_columns(pl.when(length >= 6).then(swapped).otherwise(pl.col("_t")).alias("_t"))
        dpos = (pl.lit(1) + (pl.col("_drop") * (length - 2).clip(lower_bound=1)).floor().cast(pl.Int64))
        dropped = pl.concat_str(pl.col("_t").str.slice(0, dpos), pl.col("_t").str.slice(dpos + 1))
        df = df.with_columns(
            pl.when(pl.col("_drop_on") & (length >= 12)).then(dropped).otherwise(pl.col("_t")).alias("input"),
            pl.lit("noise").alias("augmentation"),
            _tier_quality(pl.col("quality_score"), data.quality_tiers["noise"]).alias("quality_score"),
        )
        parts.append(_out(df.collect()))
    return pl.concat(parts)


@dataclass
class AugmentResult:
    examples: pl.DataFrame
    produced: dict[str, int]
    kept: dict[str, int]
    rejected: dict[str, int]  # reason -> count


def augment_examples(
    base: pl.DataFrame,
    ct: CompiledTemplates,
    data: AugmentData,
    settings: AugmentSettings,
    rng: np.random.Generator,
) -> AugmentResult:
    """Base rows plus their augmentations; invalid and duplicate rows are filtered and counted by reason."""
    catalog = ct.catalog
    routing = pl.DataFrame(
        [(c, cx, catalog.model_for(c, cx)) for c in catalog.categories for cx in catalog.complexities],
        schema=["output_agent", "complexity", "expected_model"],
        orient="row",
    )
    base = base.select(list(WORKING_SCHEMA)).with_row_index("_g")
    parts = {
        "base": base,
        "paraphrase": paraphrase(base, data, settings.paraphrases_per_example, rng),
        "complexity": vary_complexity(base, data, catalog.complexities, routing, settings.complexity_variations, rng),
        "domain": transfer_domain(base, ct, data, settings.domain_transfers, rng),
        "noise": add_noise(base, data, settings.noise_variants, rng),
    }
    produced = {k: v.height for k, v in parts.items()}
    order = {k: i for i, k in enumerate(AUGMENTATION_KINDS)}
    allrows = pl.concat(
        [_out(v).with_columns(pl.lit(order[k], dtype=pl.Int8).alias("_kind")) for k, v in parts.items()]
    ).with_row_index("_pos")
    allrows = allrows.with_columns(base["input"].gather(allrows["_g"]).alias("_orig"))
    stripped = pl.col("input").str.strip_chars()
    allrows = allrows.with_columns(stripped.alias("input"))
    reason = (
        pl.when(pl.col("input").str.len_chars() == 0).then(pl.lit("empty"))
        .when(pl.col("input").str.contains(UNFILLED_RE) | pl.col("context").str.contains(UNFILLED_RE))
        .then(pl.lit("unfilled_slot"))
        .when((pl.col("_kind") > 0) & (pl.col("input") == pl.col("_orig"))).then(pl.lit("unchanged"))
        .when(~pl.col("input").is_first_distinct()).then(pl.lit("duplicate"))
        .otherwise(pl.lit(None, dtype=pl.String))
    )
    allrows = allrows.with_columns(reason.alias("_reject"))
    rejected = {
        r: c for r, c in allrows.filter(pl.col("_reject").is_not_null()).group_by("_reject").len().sort("_reject").iter_rows()
    }
    good = allrows.filter(pl.col("_reject").is_null())
    kept_counts = dict(good.group_by("augmentation").len().iter_rows())
    # Row order is the concatenation order (all base rows, then each augmentation kind), deterministic by seed;
    # regrouping by base row would cost a 1M-row gather for no downstream benefit (splits work on group_id).
    good = good.select(list(WORKING_SCHEMA))
    log.info("augmented %d base rows to %d (rejected %s)", base.height, good.height, rejected)
    return AugmentResult(
        examples=good,
        produced=produced,
        kept={k: int(kept_counts.get(k, 0)) for k in AUGMENTATION_KINDS},
        rejected={k: int(v) for k, v in rejected.items()},
    )


def describe(data: AugmentData) -> dict[str, Any]:
    return {"synonym_groups": len(data.synonyms), "frames": len(data.imperative_frames) + len(data.neutral_frames)}
