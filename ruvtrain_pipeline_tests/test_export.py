"""gguf_export on a tiny trained model: GGUF files that llama.cpp itself loads, embeddings matching torch."""

from __future__ import annotations

import json

import pytest

from .conftest import write_tiny_catalog

pytestmark = pytest.mark.slow


def test_gguf_export_verified_by_llamacpp(tmp_path):
    import gguf

    from ruvtrain_pipeline.definitions import all_assets

    from .test_assets import _materialize
    from .test_training import _config

    catalog_dir = write_tiny_catalog(tmp_path / "catalog")
    cfg = _config(catalog_dir, tmp_path)
    cfg["ops"]["gguf_export"] = {"config": {"verify_texts": 40}}
    result = _materialize(tmp_path / "data", cfg, assets=all_assets)
    assert result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["gguf_verified"] is True
    md = result.asset_materializations_for_node("gguf_export")[0].metadata
    assert md["cosine_min_f32"].value >= 0.999 and md["cosine_min_f16"].value >= 0.999
    assert md["cosine_min_q8_0"].value >= 0.99
    assert md["q8_0_size_share_of_f32"].value <= 0.30
    out = tmp_path / "data" / "gguf_export"
    reader = gguf.GGUFReader(str(out / "router-encoder-f32.gguf"))
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "bert"
    side = gguf.GGUFReader(str(out / "router-sidecar.gguf"))
    labels_field = side.fields["ruvtrain.labels"]
    labels = json.loads(bytes(labels_field.parts[labels_field.data[0]]).decode())
    assert len(labels["agent_types"]) == 13
    assert {t.name for t in side.tensors} >= {"prototypes", "head.agent.weight", "head.complexity.weight"}
