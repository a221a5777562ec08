"""gguf_export on a tiny trained model: GGUF files that llama.cpp itself loads, embeddings matching torch."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_gguf_export_verified_by_llamacpp(tiny_pipeline):
    import gguf

    result = tiny_pipeline.result
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["gguf_verified"] is True
    md = result.asset_materializations_for_node("gguf_export")[0].metadata
    assert md["cosine_min_f32"].value >= 0.999 and md["cosine_min_f16"].value >= 0.999
    assert md["cosine_min_q8_0"].value >= 0.99
    assert md["cosine_min_lora"].value >= 0.999  # the adapter GGUF applied by llama.cpp on the base GGUF
    assert md["q8_0_size_share_of_f32"].value <= 0.30
    # every quantization was scored on the same validation rows through the llamacpp backend
    assert md["validation_rows_scored"].value > 0
    for name in ("torch", "f32", "f16", "q8_0"):
        assert 0 <= md[f"val_agent_acc_embedding_{name}"].value <= 1
    assert abs(md["val_agent_acc_embedding_f32"].value - md["val_agent_acc_embedding_torch"].value) <= 0.02
    out = tiny_pipeline.data / "gguf_export"
    reader = gguf.GGUFReader(str(out / "router-encoder-f32.gguf"))
    assert reader.get_field("general.architecture").contents() == "bert"
    lora = gguf.GGUFReader(str(out / "router-lora.gguf"))
    assert lora.get_field("general.type").contents() == "adapter"
    assert lora.get_field("adapter.type").contents() == "lora"
    names = {t.name for t in lora.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.0.attn_v.weight.lora_b" in names
    side = gguf.GGUFReader(str(out / "router-sidecar.gguf"))
    labels = json.loads(side.get_field("ruvtrain.labels").contents())
    assert len(labels["agent_types"]) == 13
    assert {t.name for t in side.tensors} >= {"prototypes", "head.agent.weight", "head.complexity.weight"}
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_lora_gguf_without_the_adapter_differs(tiny_pipeline):
    """The adapter matters: llama.cpp on the base GGUF alone is measurably further from the trained model."""
    from ruvtrain_pipeline.core.export.gguf_bert import llamacpp_cosines
    from ruvtrain_pipeline.core.router import Router

    out = tiny_pipeline.data / "gguf_export"
    texts = ["why does the login page throw a 500", "plan the Q3 migration", "write a README for the CLI"]
    ref = Router(tiny_pipeline.data / "trained_adapter").embed(texts)
    base = next(out.glob("router-base-*.gguf"))
    with_lora = llamacpp_cosines(base, texts, ref, lora_path=out / "router-lora.gguf")
    without = llamacpp_cosines(base, texts, ref)
    assert with_lora.min() >= 0.999
    assert without.mean() < with_lora.mean()
