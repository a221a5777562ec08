"""Fixtures: tiny catalogs built from the real catalog files, and a helper to materialize assets in-process."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from ruvtrain_pipeline.core.catalog import CATALOG_DIR, load_catalog  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
PEER_DIR = REPO_ROOT.parent / "shared" / "benchmarks" / "peer"

# Three hand-written shapes, reused for every agent type (tests only; the real library lives in catalog/templates).
TINY_TEMPLATES = [
    ("Simple", "Web", "Add {feature} to {stack} ({ticket}) - {agent} job", "Needed {deadline} in {env}."),
    ("Moderate", "Mobile", "why does the {component} in {file} throw {error}? ({agent})", "Seen in {env}."),
    ("Complex", "Api", "plan and build {feature} across {stack} for {team}, {agent} work", "Due {deadline}."),
]


def write_tiny_catalog(root: Path, per_agent: int = 3) -> Path:
    """A valid catalog with `per_agent` templates per agent type, sharing the real agents/routing/vocabulary."""
    (root / "templates").mkdir(parents=True, exist_ok=True)
    for name in ("agents.yaml", "routing.yaml", "vocabulary.yaml", "augment.yaml"):
        shutil.copyfile(CATALOG_DIR / name, root / name)
    agents = list(yaml.safe_load((root / "agents.yaml").read_text())["agents"])
    for agent in agents:
        items = []
        for i in range(per_agent):
            cx, dom, text, ctx = TINY_TEMPLATES[i % len(TINY_TEMPLATES)]
            items.append({"id": f"{agent}-{i:03d}", "input": text.replace("{agent}", agent), "context": ctx,
                          "complexity": cx, "domain": dom, "tags": [agent, "tiny"], "quality": 0.92})
        (root / "templates" / f"{agent}.yaml").write_text(
            yaml.safe_dump({"agent_type": agent, "templates": items}, sort_keys=False))
    return root


@pytest.fixture
def tiny_catalog_dir(tmp_path: Path) -> Path:
    return write_tiny_catalog(tmp_path / "catalog")


@pytest.fixture
def tiny_catalog(tiny_catalog_dir: Path):
    return load_catalog(tiny_catalog_dir)


@pytest.fixture(scope="session")
def real_catalog():
    return load_catalog()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def eval_config(**overrides) -> dict:
    return {"peer_benchmark_dir": str(PEER_DIR), "latency_requests": 10, "robustness_rows": 40} | overrides


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory):
    """The whole chain materialized once on a tiny catalog and tiny training settings (shared by the router, export
    and evaluation tests): a namespace with `root`, `data` and the Dagster `result`."""
    from types import SimpleNamespace

    from ruvtrain_pipeline.definitions import all_assets

    from .test_assets import _materialize
    from .test_training import _config

    root = tmp_path_factory.mktemp("pipeline")
    catalog_dir = write_tiny_catalog(root / "catalog")
    cfg = _config(catalog_dir, root)
    cfg["ops"]["gguf_export"] = {"config": {"verify_texts": 40}}
    cfg["ops"]["evaluation_report"] = {"config": eval_config()}
    result = _materialize(root / "data", cfg, assets=all_assets)
    assert result.success
    return SimpleNamespace(root=root, data=root / "data", result=result, catalog_dir=catalog_dir)
