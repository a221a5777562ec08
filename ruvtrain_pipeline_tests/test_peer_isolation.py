"""The peer benchmark is test data only: no template, context or vocabulary value may quote it."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import PEER_DIR

SHINGLE = 5  # five consecutive words in common counts as quoting


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shingles(text: str, n: int = SHINGLE) -> set[tuple[str, ...]]:
    t = _tokens(text)
    return {tuple(t[i : i + n]) for i in range(len(t) - n + 1)}


def _peer_tasks() -> list[str]:
    files = sorted(PEER_DIR.glob("*.jsonl")) if PEER_DIR.exists() else []
    if not files:
        pytest.skip(f"peer benchmarks not present at {PEER_DIR}")
    return [json.loads(line)["task"] for f in files for line in f.read_text().splitlines() if line.strip()]


def test_no_template_or_vocabulary_quotes_the_peer_benchmark(real_catalog):
    peer = _peer_tasks()
    peer_shingles = set().union(*(_shingles(p) for p in peer))
    peer_lower = {p.lower().strip() for p in peer}
    texts = [(t.id, t.input) for t in real_catalog.templates] + [(t.id, t.context) for t in real_catalog.templates]
    texts += [(name, v) for name, lists in real_catalog.vocabulary.items() for vs in lists.values() for v in vs]
    offenders = [(where, text) for where, text in texts if _shingles(text) & peer_shingles]
    offenders += [(where, text) for where, text in texts if text.lower().strip() in peer_lower]
    assert offenders == []


def test_augmentation_data_does_not_quote_the_peer_benchmark():
    from ruvtrain_pipeline.core.catalog import CATALOG_DIR

    peer_shingles = set().union(*(_shingles(p) for p in _peer_tasks()))
    text = (CATALOG_DIR / "augment.yaml").read_text()
    assert not (_shingles(text) & peer_shingles)
