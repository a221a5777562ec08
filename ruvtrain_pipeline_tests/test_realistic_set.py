"""The hand-written realistic evaluation set (catalog/eval/realistic.jsonl): well-formed, correctly labelled against
agents.yaml and routing.yaml, and independent of the training templates, vocabulary, keyword rules and peer benchmark.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter

import pytest
import yaml

from ruvtrain_pipeline.core.catalog import CATALOG_DIR
from ruvtrain_pipeline.core.keywords import KEYWORDS_FILE

from .conftest import PEER_DIR, REPO_ROOT

REALISTIC_FILE = CATALOG_DIR / "eval" / "realistic.jsonl"
KEY_ORDER = ["id", "input", "context", "agent_type", "agent", "complexity", "expected_model"]
REQUIRED = [k for k in KEY_ORDER if k != "context"]
MIN_LINES = 200
MIN_PER_AGENT = 15
SHINGLE = 5  # five consecutive words in common counts as quoting


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    t = _tokens(text)
    return {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}


def _texts(row: dict) -> list[str]:
    return [row["input"]] + ([row["context"]] if "context" in row else [])


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    lines = [ln for ln in REALISTIC_FILE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    out = []
    for n, line in enumerate(lines, 1):
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as exc:  # pragma: no cover - reported as a failure
            pytest.fail(f"{REALISTIC_FILE}:{n}: invalid JSON: {exc}")
    return out


@pytest.fixture(scope="module")
def spec() -> tuple[dict, list[str], dict]:
    agents_raw = yaml.safe_load((CATALOG_DIR / "agents.yaml").read_text(encoding="utf-8"))
    routing_raw = yaml.safe_load((CATALOG_DIR / "routing.yaml").read_text(encoding="utf-8"))
    categories = {name: a["category"] for name, a in agents_raw["agents"].items()}
    return categories, list(agents_raw["complexities"]), routing_raw["table"]


def test_rows_are_well_formed_and_labelled(rows, spec):
    categories, complexities, table = spec
    assert len(rows) >= MIN_LINES
    for i, row in enumerate(rows, 1):
        where = f"line {i} ({row.get('id')})"
        assert all(k in row for k in REQUIRED), f"{where}: missing keys {[k for k in REQUIRED if k not in row]}"
        assert list(row) == [k for k in KEY_ORDER if k in row], f"{where}: unexpected keys or key order {list(row)}"
        assert row["id"] == f"R{i:03d}", f"{where}: ids must run R001, R002, ... in order"
        assert isinstance(row["input"], str) and row["input"].strip(), where
        if "context" in row:
            assert isinstance(row["context"], str) and row["context"].strip(), where
        assert row["agent_type"] in categories, f"{where}: unknown agent_type {row['agent_type']!r}"
        assert row["agent"] == categories[row["agent_type"]], f"{where}: agent must be the agent type's category"
        assert row["complexity"] in complexities, f"{where}: bad complexity {row['complexity']!r}"
        assert row["expected_model"] == table[row["agent"]][row["complexity"]], f"{where}: expected_model mismatch"


def test_ids_and_inputs_unique_and_coverage(rows, spec):
    categories, complexities, _ = spec
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    inputs = [r["input"].strip().lower() for r in rows]
    dupes = [t for t, c in Counter(inputs).items() if c > 1]
    assert dupes == []
    per_agent = Counter(r["agent_type"] for r in rows)
    assert {a: per_agent.get(a, 0) for a in categories if per_agent.get(a, 0) < MIN_PER_AGENT} == {}
    for agent in categories:  # every agent type uses every complexity
        assert {r["complexity"] for r in rows if r["agent_type"] == agent} == set(complexities), agent


def test_no_two_requests_share_five_words(rows):
    owner: dict[tuple[str, ...], str] = {}
    clashes = []
    for row in rows:
        for s in _shingles(row["input"]):
            if s in owner and owner[s] != row["id"]:
                clashes.append((owner[s], row["id"], " ".join(s)))
            owner.setdefault(s, row["id"])
    assert clashes == []


def test_independent_of_templates_and_vocabulary(rows, real_catalog):
    sources = [t.input for t in real_catalog.templates] + [t.context for t in real_catalog.templates]
    sources += [v for lists in real_catalog.vocabulary.values() for vs in lists.values() for v in vs]
    banned = set().union(*(_shingles(s) for s in sources))
    offenders = [(r["id"], " ".join(s)) for r in rows for text in _texts(r) for s in _shingles(text) & banned]
    assert offenders == []


def test_no_input_is_a_keyword_phrase(rows):
    rules = (yaml.safe_load(KEYWORDS_FILE.read_text(encoding="utf-8")) or {}).get("rules") or {}
    phrases = {p.strip().lower() for ps in rules.values() for p in ps}
    assert [r["id"] for r in rows if r["input"].strip().lower() in phrases] == []


def test_independent_of_peer_benchmark(rows):
    files = sorted(PEER_DIR.glob("*.jsonl")) if PEER_DIR.exists() else []
    if not files:
        pytest.skip(f"peer benchmarks not present at {PEER_DIR}")
    peer = [json.loads(line)["task"] for f in files for line in f.read_text().splitlines() if line.strip()]
    peer_shingles = set().union(*(_shingles(p) for p in peer))
    peer_lower = {p.lower().strip() for p in peer}
    offenders = [r["id"] for r in rows if _shingles(r["input"]) & peer_shingles]
    offenders += [r["id"] for r in rows if r["input"].lower().strip() in peer_lower]
    assert offenders == []


def test_second_annotation_covers_the_set_and_the_script_scores_it(rows, tmp_path):
    """catalog/eval/second_annotation holds one blind label per realistic row (labels only, no request text) and
    benchmarks/label_agreement.py scores it and the peer96 one; a missing row is an error naming the file."""
    ann = CATALOG_DIR / "eval" / "second_annotation"
    second = [json.loads(line) for line in (ann / "realistic.jsonl").read_text().splitlines() if line.strip()]
    assert [r["id"] for r in second] == [r["id"] for r in rows]
    assert all(set(r) == {"id", "agent_type", "complexity"} for r in second)
    if not (PEER_DIR / "ruvector_routing_benchmark_96.jsonl").exists():
        pytest.skip(f"peer benchmarks not present at {PEER_DIR}")
    script = [sys.executable, str(REPO_ROOT / "benchmarks" / "label_agreement.py"), "--router", "",
              "--peer-dir", str(PEER_DIR)]
    out = subprocess.run(script, capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr
    table = [line for line in out.stdout.splitlines() if "| second annotator |" in line]
    assert [line.split("|")[1].strip() for line in table] == ["realistic", "peer96"]
    agree = sum(s["agent_type"] == r["agent_type"] for s, r in zip(second, rows, strict=True)) / len(rows)
    assert float(table[0].split("|")[4]) == pytest.approx(agree, abs=5e-4)

    (tmp_path / "realistic.jsonl").write_text("".join(json.dumps(s) + "\n" for s in second[:-1]))
    shutil.copy(ann / "peer96.jsonl", tmp_path / "peer96.jsonl")
    bad = subprocess.run(script + ["--annotations", str(tmp_path)], capture_output=True, text=True, timeout=300,
                         cwd=REPO_ROOT)
    assert bad.returncode != 0
    assert "realistic.jsonl" in bad.stderr and rows[-1]["id"] in bad.stderr
