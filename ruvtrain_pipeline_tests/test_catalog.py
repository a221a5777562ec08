"""The catalog: the real library meets the issue's floor, and every kind of bad input fails with file + id."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ruvtrain_pipeline.core.catalog import PLACEHOLDER_RE, CatalogError, load_catalog, summarize

EXPECTED_CATEGORY = {
    "coder": "coder", "tester": "coder", "debugger": "coder", "refactorer": "coder", "optimizer": "coder",
    "devops": "coder", "researcher": "researcher", "documenter": "researcher", "api-docs": "researcher",
    "security-architect": "security", "architect": "architecture", "planner": "architecture",
    "reviewer": "reviewer",
}
EXPECTED_PAIRS = {
    ("coder", "refactorer"), ("researcher", "architect"), ("reviewer", "tester"), ("debugger", "optimizer"),
    ("documenter", "api-docs"), ("architect", "planner"), ("security-architect", "reviewer"), ("coder", "debugger"),
    ("tester", "debugger"), ("optimizer", "architect"),
}


def test_agents_categories_and_pairs(real_catalog):
    assert {a: real_catalog.category_of(a) for a in real_catalog.agent_types} == EXPECTED_CATEGORY
    assert all(real_catalog.agents[a]["description"] for a in real_catalog.agent_types)
    assert set(real_catalog.confusing_pairs) == EXPECTED_PAIRS
    assert real_catalog.domains == ["Web", "Systems", "DataScience", "Mobile", "DevOps", "Security", "Database", "Api"]
    assert real_catalog.complexities == ["Simple", "Moderate", "Complex"]


def test_routing_table_is_the_seeds(real_catalog):
    r = real_catalog.routing
    assert r["coder"] == {"Simple": "haiku", "Moderate": "sonnet", "Complex": "opus"}
    assert r["researcher"] == {"Simple": "haiku", "Moderate": "sonnet", "Complex": "sonnet"}
    assert set(r["security"].values()) == {"opus"}
    assert r["architecture"] == {"Simple": "sonnet", "Moderate": "opus", "Complex": "opus"}
    assert r["reviewer"] == {"Simple": "haiku", "Moderate": "sonnet", "Complex": "sonnet"}
    prices = [real_catalog.price_per_request(m) for m in ("haiku", "sonnet", "opus")]
    assert prices == sorted(prices) and prices[0] > 0


def test_template_library_floor(real_catalog):
    s = summarize(real_catalog)
    assert s["templates"] >= 520
    for agent in real_catalog.agent_types:
        mine = [t for t in real_catalog.templates if t.agent_type == agent]
        assert len(mine) >= 40, agent
        assert {t.complexity for t in mine} == set(real_catalog.complexities), agent
    assert set(s["by_domain"]) == set(real_catalog.domains)
    for t in real_catalog.templates:
        assert 0.80 <= t.quality <= 0.96
        assert t.tags
    for name, lists in real_catalog.vocabulary.items():
        for values in lists.values():
            assert len(values) >= 6, name


def test_templates_are_not_one_skeleton(real_catalog):
    # variety: first words and lengths spread widely
    first_words = {t.input.split()[0].lower() for t in real_catalog.templates}
    lengths = [len(t.input.split()) for t in real_catalog.templates]
    assert len(first_words) >= 60
    assert min(lengths) <= 8 and max(lengths) >= 25
    assert sum(t.input.rstrip().endswith("?") for t in real_catalog.templates) >= 40


def _edit(catalog_dir: Path, agent: str, index: int, **changes) -> Path:
    path = catalog_dir / "templates" / f"{agent}.yaml"
    data = yaml.safe_load(path.read_text())
    data["templates"][index].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"input": "fix {nonexistent_slot} now {ticket}"}, r"unknown placeholder '\{nonexistent_slot\}'"),
        ({"complexity": "Hard"}, r"complexity 'Hard' is not one of"),
        ({"domain": "Frontend"}, r"domain 'Frontend' is not one of"),
        ({"quality": 0.99}, r"quality 0.99 out of range 0.80-0.96"),
        ({"quality": 0.5}, r"quality 0.5 out of range"),
        ({"input": "fix {ticket} now }"}, r"stray brace in input"),
    ],
)
def test_bad_template_names_file_line_and_id(tiny_catalog_dir, changes, message):
    path = _edit(tiny_catalog_dir, "tester", 1, **changes)
    with pytest.raises(CatalogError) as err:
        load_catalog(tiny_catalog_dir)
    text = str(err.value)
    assert re.search(message, text), text
    assert str(path) in text and "template 'tester-001'" in text
    assert re.search(r"tester\.yaml:\d+:", text)


def test_duplicate_id_is_rejected(tiny_catalog_dir):
    path = _edit(tiny_catalog_dir, "coder", 2, id="coder-000")
    expected = r"template 'coder-000': duplicate template id \(first defined at .*coder\.yaml:\d+\)"
    with pytest.raises(CatalogError, match=expected) as err:
        load_catalog(tiny_catalog_dir)
    assert str(path) in str(err.value)


def test_duplicate_id_across_files(tiny_catalog_dir):
    _edit(tiny_catalog_dir, "planner", 0, id="architect-000")
    with pytest.raises(CatalogError, match=r"planner\.yaml:\d+: template 'architect-000': duplicate template id"):
        load_catalog(tiny_catalog_dir)


def test_short_vocabulary_is_rejected(tiny_catalog_dir):
    path = tiny_catalog_dir / "templates" / "coder.yaml"
    data = yaml.safe_load(path.read_text())
    data["vocabulary"] = {"coder_thing": ["a", "b", "c"]}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError, match=r"coder\.yaml:\d+: placeholder 'coder_thing': has 3 values, needs at least 6"):
        load_catalog(tiny_catalog_dir)


def test_missing_field_and_unknown_agent(tiny_catalog_dir):
    path = tiny_catalog_dir / "templates" / "devops.yaml"
    data = yaml.safe_load(path.read_text())
    del data["templates"][0]["tags"]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError, match=r"template 'devops-000': missing field 'tags'"):
        load_catalog(tiny_catalog_dir)
    data["templates"][0]["tags"] = ["x"]
    data["agent_type"] = "wizard"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(CatalogError, match=r"devops\.yaml: agent_type 'wizard' is not an agent"):
        load_catalog(tiny_catalog_dir)


def test_invalid_yaml_names_file(tiny_catalog_dir):
    path = tiny_catalog_dir / "templates" / "coder.yaml"
    path.write_text("agent_type: coder\ntemplates: [\n")
    with pytest.raises(CatalogError, match=r"coder\.yaml: invalid YAML"):
        load_catalog(tiny_catalog_dir)


def test_every_placeholder_in_real_templates_is_defined(real_catalog):
    for t in real_catalog.templates:
        for name in PLACEHOLDER_RE.findall(t.input + t.context):
            assert name in real_catalog.vocabulary
