"""Vectorized template filling: seed templates -> base examples.

Templates are compiled once into arrays of literal pieces and slot references; a batch of rows (template index,
domain, slot-value indices) is rendered with polars gathers and one `concat_str`, never a Python loop per row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import polars as pl

from .catalog import PLACEHOLDER_RE, Catalog
from .schema import EXAMPLE_SCHEMA, MAX_SLOTS, SLOT_COLUMNS, WORKING_SCHEMA, category_label

log = logging.getLogger(__name__)


class GenerationError(ValueError):
    """The template library cannot produce what was asked (e.g. too few distinct examples)."""


@dataclass
class CompiledTemplates:
    """Array form of the template library, indexed by template number t."""

    catalog: Catalog
    ids: np.ndarray  # (T,) str
    agent_idx: np.ndarray  # (T,) int
    complexity_idx: np.ndarray  # (T,)
    domain_idx: np.ndarray  # (T,)
    quality: np.ndarray  # (T,) float
    n_slots: np.ndarray  # (T,)
    slot_size: np.ndarray  # (T, MAX_SLOTS, D) vocabulary size of slot j in domain d (1 for unused slots)
    slot_offset: np.ndarray  # (T, MAX_SLOTS, D) start of that list in `flat`
    domain_keyed: np.ndarray  # (T,) bool: has at least one domain-keyed slot
    flat: pl.Series  # every vocabulary value, then "" at index len-1
    input_lits: pl.Series  # (T * (P+1),) literal pieces of input
    input_refs: np.ndarray  # (T, P) slot number per gap, -1 = none
    context_lits: pl.Series
    context_refs: np.ndarray
    tags: list[list[str]]
    # per-template facts the generator needs on every call, computed once here
    input_space: np.ndarray = None  # type: ignore[assignment]  # (T,) distinct inputs in the template's domain
    input_radices: np.ndarray = None  # type: ignore[assignment]  # (T, MAX_SLOTS) radix of each input slot
    tags_series: pl.Series = None  # type: ignore[assignment]

    @property
    def n_templates(self) -> int:
        return len(self.ids)


def _split_pieces(text: str, slots: tuple[str, ...]) -> tuple[list[str], list[int]]:
    lits: list[str] = []
    refs: list[int] = []
    pos = 0
    for m in PLACEHOLDER_RE.finditer(text):
        lits.append(text[pos : m.start()])
        refs.append(slots.index(m.group(1)))
        pos = m.end()
    lits.append(text[pos:])
    return lits, refs


def compile_templates(catalog: Catalog) -> CompiledTemplates:
    templates = catalog.templates
    if not templates:
        raise GenerationError("the catalog has no templates")
    domains = catalog.domains
    n_dom = len(domains)
    flat_values: list[str] = []
    offsets: dict[tuple[str, str], tuple[int, int]] = {}
    for name, lists in catalog.vocabulary.items():
        for key, values in lists.items():
            offsets[(name, key)] = (len(flat_values), len(values))
            flat_values.extend(values)
    empty = len(flat_values)
    flat_values.append("")

    n = len(templates)
    slot_size = np.ones((n, MAX_SLOTS, n_dom), dtype=np.int64)
    slot_offset = np.full((n, MAX_SLOTS, n_dom), empty, dtype=np.int64)
    domain_keyed = np.zeros(n, dtype=bool)
    n_slots = np.zeros(n, dtype=np.int64)
    in_pieces = [_split_pieces(t.input, t.slots) for t in templates]
    cx_pieces = [_split_pieces(t.context, t.slots) for t in templates]
    max_in = max(len(r) for _, r in in_pieces)
    max_cx = max(len(r) for _, r in cx_pieces)
    for ti, t in enumerate(templates):
        if len(t.slots) > MAX_SLOTS:
            raise GenerationError(f"template '{t.id}' ({t.source}) has {len(t.slots)} slots; at most {MAX_SLOTS}")
        n_slots[ti] = len(t.slots)
        for j, name in enumerate(t.slots):
            keyed = catalog.is_domain_keyed(name)
            domain_keyed[ti] |= keyed
            for di, dom in enumerate(domains):
                start, size = offsets[(name, dom if keyed else "__all__")]
                slot_offset[ti, j, di] = start
                slot_size[ti, j, di] = size

    def lit_table(pieces: list[tuple[list[str], list[int]]], width: int) -> tuple[pl.Series, np.ndarray]:
        lits = []
        refs = np.full((n, width), -1, dtype=np.int64)
        for ti, (ls, rs) in enumerate(pieces):
            lits.extend(ls + [""] * (width + 1 - len(ls)))
            refs[ti, : len(rs)] = rs
        return pl.Series(lits, dtype=pl.String), refs

    input_lits, input_refs = lit_table(in_pieces, max_in)
    context_lits, context_refs = lit_table(cx_pieces, max_cx)
    agent_pos = {a: i for i, a in enumerate(catalog.agent_types)}
    compiled = CompiledTemplates(
        catalog=catalog,
        ids=np.array([t.id for t in templates]),
        agent_idx=np.array([agent_pos[t.agent_type] for t in templates]),
        complexity_idx=np.array([catalog.complexities.index(t.complexity) for t in templates]),
        domain_idx=np.array([domains.index(t.domain) for t in templates]),
        quality=np.array([t.quality for t in templates]),
        n_slots=n_slots,
        slot_size=slot_size,
        slot_offset=slot_offset,
        domain_keyed=domain_keyed,
        flat=pl.Series(flat_values, dtype=pl.String),
        input_lits=input_lits,
        input_refs=input_refs,
        context_lits=context_lits,
        context_refs=context_refs,
        tags=[list(t.tags) for t in templates],
    )
    compiled.input_radices = _input_radices(compiled)
    compiled.input_space = compiled.input_radices.astype(np.float64).prod(axis=1)
    compiled.tags_series = pl.Series("tags", compiled.tags, dtype=pl.List(pl.String))
    return compiled


def template_space(ct: CompiledTemplates) -> np.ndarray:
    """Number of distinct inputs each template can render in its own domain (slots used by the input only)."""
    return ct.input_space


def _render(
    ct: CompiledTemplates, tmpl: np.ndarray, dom: np.ndarray, slots: np.ndarray, lits: pl.Series, refs: np.ndarray
) -> pl.Series:
    width = refs.shape[1]
    cols: list[pl.Series] = []
    lit_base = tmpl * (width + 1)
    for i in range(width + 1):
        cols.append(lits.gather(lit_base + i))
        if i == width:
            break
        ref = refs[tmpl, i]
        has = ref >= 0
        j = np.where(has, ref, 0)
        value_idx = np.where(
            has,
            ct.slot_offset[tmpl, j, dom] + slots[np.arange(len(tmpl)), j],
            len(ct.flat) - 1,
        )
        cols.append(ct.flat.gather(value_idx))
    frame = pl.DataFrame({f"p{i}": c for i, c in enumerate(cols)})
    return frame.select(pl.concat_str(pl.all()).alias("text")).to_series()


def render(ct: CompiledTemplates, tmpl: np.ndarray, dom: np.ndarray, slots: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """Render input and context for rows (template index, domain index, slot-value indices (n, MAX_SLOTS))."""
    return (
        _render(ct, tmpl, dom, slots, ct.input_lits, ct.input_refs),
        _render(ct, tmpl, dom, slots, ct.context_lits, ct.context_refs),
    )


def draw_slots(ct: CompiledTemplates, tmpl: np.ndarray, dom: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sizes = ct.slot_size[tmpl[:, None], np.arange(MAX_SLOTS)[None, :], dom[:, None]]
    return np.floor(rng.random((len(tmpl), MAX_SLOTS)) * sizes).astype(np.int64)


def build_frame(
    ct: CompiledTemplates,
    tmpl: np.ndarray,
    dom: np.ndarray,
    slots: np.ndarray,
    complexity_idx: np.ndarray,
    quality: np.ndarray,
    augmentation: str,
    group_id: pl.Series,
    texts: tuple[pl.Series, pl.Series] | None = None,
) -> pl.DataFrame:
    """Assemble a working frame (EXAMPLE_SCHEMA + slot columns) for rendered rows."""
    cat = ct.catalog
    inputs, contexts = texts if texts is not None else render(ct, tmpl, dom, slots)
    cat_pos = {c: i for i, c in enumerate(cat.categories)}
    agent_idx = ct.agent_idx[tmpl]
    agent_cat_idx = np.array([cat_pos[cat.category_of(a)] for a in cat.agent_types])[agent_idx]
    model_table = [cat.model_for(c, cx) for c in cat.categories for cx in cat.complexities]
    n_cx = len(cat.complexities)

    def pick(values: list[str], idx: np.ndarray) -> pl.Series:
        return pl.Series(values, dtype=pl.String).gather(idx)

    frame = pl.DataFrame(
        {
            "input": inputs,
            "context": contexts,
            "output_agent": pick(cat.categories, agent_cat_idx),
            "category": pick([category_label(c) for c in cat.categories], agent_cat_idx),
            "complexity": pick(cat.complexities, complexity_idx),
            "domain": pick(cat.domains, dom),
            "expected_model": pick(model_table, agent_cat_idx * n_cx + complexity_idx),
            "quality_score": np.round(quality, 3),
            "tags": ct.tags_series.gather(tmpl),
            "agent_type": pick(cat.agent_types, agent_idx),
            "template_id": pick(ct.ids.tolist(), tmpl),
            "augmentation": pick([augmentation], np.zeros(len(tmpl), dtype=np.int64)),
            "group_id": group_id,
        }
        | {c: slots[:, i].astype(np.uint32) for i, c in enumerate(SLOT_COLUMNS)}
    )
    return frame.select(list(WORKING_SCHEMA))


def _allocate(total: int, parts: int, rng: np.random.Generator) -> np.ndarray:
    """Split `total` into `parts` near-equal integer counts (remainder to random parts)."""
    base = np.full(parts, total // parts, dtype=np.int64)
    base[rng.permutation(parts)[: total % parts]] += 1
    return base


def _input_radices(ct: CompiledTemplates) -> np.ndarray:
    """(T, MAX_SLOTS) radix per slot for the exact input key: the slot's size if the input uses it, else 1."""
    d = ct.domain_idx
    sizes = ct.slot_size[np.arange(ct.n_templates), :, d]
    used = np.zeros_like(sizes, dtype=bool)
    for t in range(ct.n_templates):
        refs = ct.input_refs[t]
        used[t, refs[refs >= 0]] = True
    return np.where(used, sizes, 1)


def _input_keys(tmpl: np.ndarray, slots: np.ndarray, radices: np.ndarray) -> np.ndarray:
    """Exact int64 key of (template, input slot values); collisions are impossible below 2**42 fillings/template."""
    r = radices[tmpl]
    code = np.zeros(len(tmpl), dtype=np.int64)
    for j in range(r.shape[1]):
        code = code * r[:, j] + np.where(r[:, j] > 1, slots[:, j], 0)
    return tmpl.astype(np.int64) * (1 << 42) + (code % (1 << 42))


def _stratum_ids(ct: CompiledTemplates, tmpl: np.ndarray, stratum_of: dict[tuple[int, int], int]) -> np.ndarray:
    n_cx = int(ct.complexity_idx.max()) + 1
    lut = np.full((int(ct.agent_idx.max()) + 1) * n_cx, -1, dtype=np.int64)
    for (a, c), i in stratum_of.items():
        lut[a * n_cx + c] = i
    return lut[ct.agent_idx[tmpl] * n_cx + ct.complexity_idx[tmpl]]


def _raise_exhausted(cat: Catalog, key: tuple[int, int], pool: np.ndarray, space: np.ndarray, quota: int,
                     missing: int) -> None:
    a, c = key
    raise GenerationError(
        f"templates for agent type '{cat.agent_types[a]}', complexity '{cat.complexities[c]}' "
        f"({len(pool)} templates, {int(space[pool].sum())} distinct inputs at most) cannot produce "
        f"{quota} distinct inputs; {missing} short. Add templates/vocabulary or lower examples_per_agent."
    )


def generate_base_examples(
    ct: CompiledTemplates, examples_per_agent: int, rng: np.random.Generator, *, max_rounds: int = 30,
    cover_templates: bool = False,
) -> pl.DataFrame:
    """`examples_per_agent` distinct examples per agent type, balanced over complexities and templates.

    Rows are sampled per (agent type, complexity) stratum: templates drawn with replacement, weighted by their
    remaining distinct inputs (capped at twice their fair share), with fresh slot draws until every stratum has its
    quota of distinct inputs. At a quota near the stratum's template count that leaves about a third of the templates
    unused, a different third for each seed. With `cover_templates` the first draw is round-robin instead: every
    template of the stratum once, in seeded order, before any twice (all templates used when the quota covers
    them). Raises GenerationError naming the stratum when
    the templates cannot produce that many distinct inputs.
    """
    cat = ct.catalog
    n_cx = len(cat.complexities)
    # quota per (agent, complexity) stratum; strata without templates pass their quota to the others
    quotas: dict[tuple[int, int], int] = {}
    strata_templates: dict[tuple[int, int], np.ndarray] = {}
    for a in range(len(cat.agent_types)):
        present = [c for c in range(n_cx) if np.any((ct.agent_idx == a) & (ct.complexity_idx == c))]
        if not present:
            raise GenerationError(f"agent type '{cat.agent_types[a]}' has no templates")
        for c, q in zip(present, _allocate(examples_per_agent, len(present), rng), strict=True):
            quotas[(a, c)] = int(q)
            strata_templates[(a, c)] = np.flatnonzero((ct.agent_idx == a) & (ct.complexity_idx == c))
    space = template_space(ct)

    # Very large requests can exceed a stratum's distinct inputs; its surplus moves to the agent's other
    # complexities (fill at most half of a stratum's space, so draws stay cheap), keeping agent types balanced.
    for a in range(len(cat.agent_types)):
        keys = [k for k in quotas if k[0] == a]
        cap = {k: int(space[strata_templates[k]].sum() * 0.5) for k in keys}
        surplus = sum(max(0, quotas[k] - cap[k]) for k in keys)
        for k in keys:
            quotas[k] = min(quotas[k], cap[k])
        while surplus > 0:
            room = [k for k in keys if quotas[k] < cap[k]]
            if not room:
                k = keys[0]
                _raise_exhausted(cat, k, strata_templates[k], space, quotas[k] + surplus, surplus)
            share = max(1, surplus // len(room))
            for k in room:
                add = min(share, cap[k] - quotas[k], surplus)
                quotas[k] += add
                surplus -= add
    # Integer phase: draw (template, slot values), dedupe by an exact key of the input's slot values, keep each
    # stratum's quota; inputs are rendered once per accepted candidate to catch identical texts across templates.
    radix_used = ct.input_radices
    used = np.zeros(ct.n_templates, dtype=np.int64)
    have = {k: 0 for k in quotas}
    seen_keys = np.empty(0, dtype=np.int64)
    seen_text = pl.Series("input", [], dtype=pl.String)
    kept_t: list[np.ndarray] = []
    kept_s: list[np.ndarray] = []
    kept_in: list[pl.Series] = []
    strata = list(quotas)
    stratum_of = {k: i for i, k in enumerate(strata)}
    for round_no in range(max_rounds):
        want = {k: q - have[k] for k, q in quotas.items() if q > have[k]}
        if not want:
            break
        factor = 1.03 if round_no == 0 else 1.5 + round_no
        tmpl_parts = []
        for k, w in want.items():
            pool = strata_templates[k]
            remaining = np.maximum(space[pool] - used[pool], 0.0)
            cap = max(1.0, 2.0 * quotas[k] / len(pool))
            weight = np.minimum(remaining, cap)
            if weight.sum() <= 0:
                continue
            draw = int(np.ceil(w * factor)) + 1
            if round_no == 0 and cover_templates:
                live = pool[remaining >= 1]
                laps = -(-draw // max(len(live), 1))
                tmpl_parts.append(np.concatenate([rng.permutation(live) for _ in range(laps)])[:draw])
                continue
            tmpl_parts.append(rng.choice(pool, size=draw, p=weight / weight.sum()))
        if not tmpl_parts:
            break
        tmpl = np.concatenate(tmpl_parts)
        dom = ct.domain_idx[tmpl]
        slots = draw_slots(ct, tmpl, dom, rng)
        keys = _input_keys(tmpl, slots, radix_used)
        _, first = np.unique(keys, return_index=True)
        fresh = np.zeros(len(keys), dtype=bool)
        fresh[first] = True
        fresh &= ~np.isin(keys, seen_keys)
        tmpl, slots, keys, dom = tmpl[fresh], slots[fresh], keys[fresh], dom[fresh]
        texts = _render(ct, tmpl, dom, slots, ct.input_lits, ct.input_refs)
        ok = (texts.is_first_distinct() & ~texts.is_in(seen_text.implode())).to_numpy()
        sid = _stratum_ids(ct, tmpl, stratum_of)
        need = np.array([want.get(k, 0) for k in strata], dtype=np.int64)
        sid_ok = np.where(ok, sid, -1)
        order = np.argsort(sid_ok, kind="stable")
        sorted_sid = sid_ok[order]
        starts = np.searchsorted(sorted_sid, sorted_sid, side="left")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order)) - starts
        keep = ok & (rank < need[np.maximum(sid, 0)])
        idx = np.flatnonzero(keep)
        kept_t.append(tmpl[idx])
        kept_s.append(slots[idx])
        kept_in.append(texts.gather(idx))
        seen_keys = np.concatenate([seen_keys, keys[idx]])
        seen_text = pl.concat([seen_text, kept_in[-1]])
        np.add.at(used, tmpl[idx], 1)
        for k_i, cnt in zip(*np.unique(sid[idx], return_counts=True), strict=True):
            have[strata[int(k_i)]] += int(cnt)
    short = {k: quotas[k] - have[k] for k in quotas if have[k] < quotas[k]}
    if short:
        k, missing = next(iter(short.items()))
        _raise_exhausted(cat, k, strata_templates[k], space, quotas[k], missing)
    tmpl = np.concatenate(kept_t)
    slots = np.concatenate(kept_s)
    inputs = pl.concat(kept_in)
    # stable, seed-independent order: agent type, complexity, then draw order
    order = np.lexsort((np.arange(len(tmpl)), ct.complexity_idx[tmpl], ct.agent_idx[tmpl]))
    tmpl, slots, inputs = tmpl[order], slots[order], inputs.gather(order)
    dom = ct.domain_idx[tmpl]
    contexts = _render(ct, tmpl, dom, slots, ct.context_lits, ct.context_refs)
    agent_idx = ct.agent_idx[tmpl]
    counters = np.arange(len(tmpl)) - np.searchsorted(agent_idx, agent_idx, side="left")
    group_id = pl.format(
        "{}-{}",
        pl.Series(cat.agent_types, dtype=pl.String).gather(agent_idx),
        pl.Series(counters).cast(pl.String).str.zfill(6),
    )
    out = build_frame(
        ct, tmpl, dom, slots, ct.complexity_idx[tmpl], ct.quality[tmpl], "base",
        pl.select(group_id).to_series().alias("group_id"), texts=(inputs, contexts),
    )
    log.info("generated %d base examples from %d templates", out.height, ct.n_templates)
    return out.select(list(WORKING_SCHEMA))


def public_columns(df: pl.DataFrame) -> pl.DataFrame:
    return df.select(list(EXAMPLE_SCHEMA))
