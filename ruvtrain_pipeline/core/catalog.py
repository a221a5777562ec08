"""The catalog: agents, routing table, slot vocabularies and the template library, loaded from YAML and validated.

Every error names the file, the line and (for templates) the template id, so a bad edit is found at once.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

CATALOG_DIR = Path(__file__).resolve().parent.parent / "catalog"
PLACEHOLDER_RE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
MIN_VOCABULARY = 6
QUALITY_RANGE = (0.80, 0.96)


class CatalogError(ValueError):
    """A catalog file is invalid; the message names file, line and template id."""


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that remembers the line of every mapping as the key `__line__`."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except FileNotFoundError as exc:
        raise CatalogError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: invalid YAML: {exc}") from exc


def _strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


@dataclass(frozen=True)
class Template:
    id: str
    agent_type: str
    input: str
    context: str
    complexity: str
    domain: str
    tags: tuple[str, ...]
    quality: float
    source: str  # "file:line"

    @property
    def slots(self) -> tuple[str, ...]:
        """Placeholder names in order of first appearance (input, then context)."""
        seen: dict[str, None] = {}
        for name in PLACEHOLDER_RE.findall(self.input) + PLACEHOLDER_RE.findall(self.context):
            seen.setdefault(name, None)
        return tuple(seen)


@dataclass
class Catalog:
    categories: list[str]
    complexities: list[str]
    domains: list[str]
    agents: dict[str, dict[str, str]]  # agent_type -> {category, description}
    confusing_pairs: list[tuple[str, str]]
    routing: dict[str, dict[str, str]]  # category -> complexity -> model
    models: dict[str, dict[str, float]]
    tier_order: list[str]
    typical_request: dict[str, int]
    # placeholder -> {"__all__": [...]} (flat) or {domain: [...]} (domain-keyed)
    vocabulary: dict[str, dict[str, list[str]]]
    templates: list[Template] = field(default_factory=list)

    @property
    def agent_types(self) -> list[str]:
        return list(self.agents)

    def category_of(self, agent_type: str) -> str:
        return self.agents[agent_type]["category"]

    def model_for(self, category: str, complexity: str) -> str:
        return self.routing[category][complexity]

    def is_domain_keyed(self, placeholder: str) -> bool:
        return "__all__" not in self.vocabulary[placeholder]

    def price_per_request(self, model: str) -> float:
        """USD for one typical request on `model` (routing.yaml prices)."""
        p = self.models[model]
        t = self.typical_request
        return (t["input_tokens"] * p["input_per_mtok"] + t["output_tokens"] * p["output_per_mtok"]) / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["confusing_pairs"] = [list(p) for p in self.confusing_pairs]
        d["templates"] = [asdict(t) | {"tags": list(t.tags)} for t in self.templates]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Catalog:
        d = dict(d)
        d["confusing_pairs"] = [tuple(p) for p in d["confusing_pairs"]]
        d["templates"] = [Template(**(t | {"tags": tuple(t["tags"])})) for t in d["templates"]]
        return cls(**d)

    def fingerprint(self) -> str:
        """Content hash of the whole catalog (stable across machines)."""
        blob = json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise CatalogError(f"{where}: missing field '{key}'")
    return mapping[key]


def _load_vocabulary(
    raw: Any, where: str, domains: list[str], vocabulary: dict[str, dict[str, list[str]]]
) -> None:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: vocabulary must be a mapping of placeholder -> values")
    line = raw.get("__line__", "?")
    for name, values in raw.items():
        if name == "__line__":
            continue
        loc = f"{where}:{values.get('__line__', line) if isinstance(values, dict) else line}: placeholder '{name}'"
        if not PLACEHOLDER_RE.fullmatch("{" + str(name) + "}"):
            raise CatalogError(f"{loc}: invalid placeholder name (use lowercase letters, digits and _)")
        if name in vocabulary:
            raise CatalogError(f"{loc}: defined twice (already in the shared or another vocabulary)")
        if isinstance(values, list):
            lists = {"__all__": values}
        elif isinstance(values, dict):
            lists = {k: v for k, v in values.items() if k != "__line__"}
            if sorted(lists) != sorted(domains):
                raise CatalogError(
                    f"{loc}: a domain-keyed vocabulary needs exactly the domains {domains}, got {sorted(lists)}"
                )
        else:
            raise CatalogError(f"{loc}: values must be a list or a mapping domain -> list")
        for key, vals in lists.items():
            label = "" if key == "__all__" else f" (domain {key})"
            if not isinstance(vals, list) or not all(isinstance(v, (str, int, float)) for v in vals):
                raise CatalogError(f"{loc}{label}: values must be a list of strings")
            vals = [str(v) for v in vals]
            if len(vals) < MIN_VOCABULARY:
                raise CatalogError(f"{loc}{label}: has {len(vals)} values, needs at least {MIN_VOCABULARY}")
            if len(set(vals)) != len(vals):
                raise CatalogError(f"{loc}{label}: duplicate values")
            for v in vals:
                if "{" in v or "}" in v or not v.strip():
                    raise CatalogError(f"{loc}{label}: value {v!r} is empty or contains a brace")
            lists[key] = vals
        vocabulary[name] = lists


def _check_text(text: Any, field_name: str, where: str, vocabulary: dict[str, Any]) -> str:
    if not isinstance(text, str) or not text.strip():
        raise CatalogError(f"{where}: field '{field_name}' must be a non-empty string")
    for name in PLACEHOLDER_RE.findall(text):
        if name not in vocabulary:
            raise CatalogError(f"{where}: unknown placeholder '{{{name}}}' in {field_name}")
    if "{" in PLACEHOLDER_RE.sub("", text) or "}" in PLACEHOLDER_RE.sub("", text):
        raise CatalogError(f"{where}: stray brace in {field_name} (placeholders look like {{name}})")
    return text


def load_catalog(catalog_dir: Path | str = CATALOG_DIR) -> Catalog:
    """Load and validate agents.yaml, routing.yaml, vocabulary.yaml and templates/*.yaml."""
    root = Path(catalog_dir)
    agents_path = root / "agents.yaml"
    agents_raw = _load_yaml(agents_path)
    categories = list(_require(agents_raw, "categories", str(agents_path)))
    complexities = list(_require(agents_raw, "complexities", str(agents_path)))
    domains = list(_require(agents_raw, "domains", str(agents_path)))
    agents: dict[str, dict[str, str]] = {}
    for name, spec in _require(agents_raw, "agents", str(agents_path)).items():
        if name == "__line__":
            continue
        where = f"{agents_path}:{spec.get('__line__', '?')}: agent '{name}'"
        cat = _require(spec, "category", where)
        if cat not in categories:
            raise CatalogError(f"{where}: unknown category '{cat}' (expected one of {categories})")
        agents[name] = {"category": cat, "description": str(_require(spec, "description", where))}
    pairs: list[tuple[str, str]] = []
    for pair in _require(agents_raw, "confusing_pairs", str(agents_path)):
        if len(pair) != 2 or any(p not in agents for p in pair) or pair[0] == pair[1]:
            raise CatalogError(f"{agents_path}: confusing pair {pair} must name two different known agent types")
        pairs.append((pair[0], pair[1]))

    routing_path = root / "routing.yaml"
    routing_raw = _strip_lines(_load_yaml(routing_path))
    models = _require(routing_raw, "models", str(routing_path))
    table = _require(routing_raw, "table", str(routing_path))
    for cat in categories:
        row = table.get(cat)
        if not isinstance(row, dict) or sorted(row) != sorted(complexities):
            raise CatalogError(f"{routing_path}: table row '{cat}' must map each of {complexities} to a model")
        for cx, model in row.items():
            if model not in models:
                raise CatalogError(f"{routing_path}: table[{cat}][{cx}] = '{model}' is not a model in 'models'")
    tier_order = list(_require(routing_raw, "tier_order", str(routing_path)))
    if sorted(tier_order) != sorted(models):
        raise CatalogError(f"{routing_path}: tier_order must list every model once")

    vocabulary: dict[str, dict[str, list[str]]] = {}
    vocab_path = root / "vocabulary.yaml"
    vocab_raw = _load_yaml(vocab_path)
    _load_vocabulary(_require(vocab_raw, "placeholders", str(vocab_path)), str(vocab_path), domains, vocabulary)

    template_files = sorted((root / "templates").glob("*.yaml"))
    raws = [(p, _load_yaml(p)) for p in template_files]
    for path, raw in raws:
        if not isinstance(raw, dict):
            raise CatalogError(f"{path}: expected a mapping with 'agent_type' and 'templates'")
        if "vocabulary" in raw:
            _load_vocabulary(raw["vocabulary"], str(path), domains, vocabulary)

    templates: list[Template] = []
    seen_ids: dict[str, str] = {}
    for path, raw in raws:
        agent = raw.get("agent_type")
        if agent not in agents:
            raise CatalogError(f"{path}: agent_type '{agent}' is not an agent in agents.yaml")
        if path.stem != agent:
            raise CatalogError(f"{path}: file name must be the agent type ('{agent}.yaml')")
        items = raw.get("templates")
        if not isinstance(items, list) or not items:
            raise CatalogError(f"{path}: 'templates' must be a non-empty list")
        for item in items:
            line = item.get("__line__", "?") if isinstance(item, dict) else "?"
            if not isinstance(item, dict):
                raise CatalogError(f"{path}:{line}: each template must be a mapping")
            tid = item.get("id")
            where = f"{path}:{line}: template '{tid}'"
            if not isinstance(tid, str) or not tid:
                raise CatalogError(f"{path}:{line}: template without an 'id'")
            if tid in seen_ids:
                raise CatalogError(f"{where}: duplicate template id (first defined at {seen_ids[tid]})")
            seen_ids[tid] = f"{path}:{line}"
            text = _check_text(_require(item, "input", where), "input", where, vocabulary)
            context = _check_text(_require(item, "context", where), "context", where, vocabulary)
            cx = _require(item, "complexity", where)
            if cx not in complexities:
                raise CatalogError(f"{where}: complexity '{cx}' is not one of {complexities}")
            dom = _require(item, "domain", where)
            if dom not in domains:
                raise CatalogError(f"{where}: domain '{dom}' is not one of {domains}")
            tags = _require(item, "tags", where)
            if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
                raise CatalogError(f"{where}: 'tags' must be a non-empty list of strings")
            quality = _require(item, "quality", where)
            if not isinstance(quality, (int, float)) or not QUALITY_RANGE[0] <= quality <= QUALITY_RANGE[1]:
                raise CatalogError(
                    f"{where}: quality {quality!r} out of range {QUALITY_RANGE[0]:.2f}-{QUALITY_RANGE[1]:.2f}"
                )
            if not PLACEHOLDER_RE.search(text):
                raise CatalogError(f"{where}: input has no placeholder; every template needs at least one slot")
            templates.append(
                Template(
                    id=tid,
                    agent_type=agent,
                    input=text,
                    context=context,
                    complexity=cx,
                    domain=dom,
                    tags=tuple(tags),
                    quality=round(float(quality), 4),
                    source=f"{path.relative_to(root.parent) if root.parent in path.parents else path}:{line}",
                )
            )
    return Catalog(
        categories=categories,
        complexities=complexities,
        domains=domains,
        agents=agents,
        confusing_pairs=pairs,
        routing={k: dict(v) for k, v in table.items()},
        models={k: dict(v) for k, v in models.items()},
        tier_order=tier_order,
        typical_request=dict(routing_raw.get("typical_request", {"input_tokens": 2000, "output_tokens": 1000})),
        vocabulary=vocabulary,
        templates=templates,
    )


def summarize(catalog: Catalog) -> dict[str, Any]:
    """Counts per agent type, complexity and domain (for metadata and the validator CLI)."""
    out: dict[str, Any] = {"templates": len(catalog.templates), "placeholders": len(catalog.vocabulary)}
    for key in ("agent_type", "complexity", "domain"):
        counts: dict[str, int] = {}
        for t in catalog.templates:
            counts[getattr(t, key)] = counts.get(getattr(t, key), 0) + 1
        out[f"by_{key}"] = dict(sorted(counts.items()))
    return out


if __name__ == "__main__":  # python -m ruvtrain_pipeline.core.catalog  -> validate and print counts
    import sys

    try:
        cat = load_catalog(sys.argv[1] if len(sys.argv) > 1 else CATALOG_DIR)
    except CatalogError as err:
        print(f"INVALID: {err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(json.dumps(summarize(cat), indent=2))
