"""A router with several members (trained_adapter config `members`): one adapter and heads per training seed, the
router averaging their probabilities, exported member by member to GGUF and served by both backends."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file

TEXTS = ["why does the login page throw a 500", "plan the Q3 migration to postgres", "write a README for the CLI",
         "audit the OAuth flow in the mobile app", "make the search endpoint faster"]


@pytest.fixture(scope="module")
def two_members(tmp_path_factory):
    from types import SimpleNamespace

    from ruvtrain_pipeline.definitions import all_assets

    from .conftest import write_tiny_catalog
    from .test_assets import _materialize
    from .test_training import TRAINING_ASSETS, _config

    root = tmp_path_factory.mktemp("members")
    cfg = _config(write_tiny_catalog(root / "catalog"), root, members=2)
    cfg["ops"]["gguf_export"] = {"config": {"verify_texts": 20, "quantizations": ["f32", "q8_0"],
                                            "score_validation": 60}}
    export = [a for a in all_assets if any(k.to_user_string() == "gguf_export" for k in a.keys)]
    result = _materialize(root / "data", cfg, assets=[*TRAINING_ASSETS, *export])
    assert result.success
    return SimpleNamespace(data=root / "data", result=result)


def _member_probabilities(folder, i, base_model, texts):
    """Member i alone, from its own files: its encoder's embeddings through its own heads (numpy softmax)."""
    from ruvtrain_pipeline.core.router import TorchEncoder, member_dir

    d = member_dir(folder, i)
    emb = TorchEncoder(base_model, d / "adapter").embed(texts)
    heads = load_file(str(d / "heads.safetensors"))

    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    return (softmax(emb @ heads["agent.weight"].T + heads["agent.bias"]),
            softmax(emb @ heads["complexity.weight"].T + heads["complexity.bias"]))


@pytest.mark.slow
def test_trained_adapter_holds_one_adapter_per_seed(two_members):
    out = two_members.data / "trained_adapter"
    checks = {e.check_name: e.passed for e in two_members.result.get_asset_check_evaluations()}
    assert checks["adapter_quality"] is True and checks["gguf_verified"] is True
    labels = json.loads((out / "labels.json").read_text())
    assert labels["members"] == 2
    for name in ("adapter/adapter_model.safetensors", "heads.safetensors", "prototypes.safetensors"):
        assert (out / name).exists() and (out / "members" / "1" / name).exists()
    a0 = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    a1 = load_file(str(out / "members" / "1" / "adapter" / "adapter_model.safetensors"))
    assert a0.keys() == a1.keys()
    assert any(not np.array_equal(a0[k], a1[k]) for k in a0), "the two members trained to the same weights"
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 42 and len(meta["member_metrics"]) == 1
    md = two_members.result.asset_materializations_for_node("trained_adapter")[0].metadata
    assert 0 < md["members_validation_agent_acc"].value <= 1 and 0 < md["member1_validation_agent_acc"].value <= 1


@pytest.mark.slow
def test_router_averages_the_members_probabilities(two_members):
    from ruvtrain_pipeline.core.router import Router

    folder = two_members.data / "trained_adapter"
    router = Router(folder, tier_confidence=None)
    assert router.members == 2 and router.prototypes.shape == (13, 768)
    emb = router.embed(TEXTS)
    assert emb.shape == (len(TEXTS), 768)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    agent, cx_logits = router.heads(emb, TEXTS)
    alone = [_member_probabilities(folder, i, router.base_model, TEXTS) for i in range(2)]
    np.testing.assert_allclose(agent, (alone[0][0] + alone[1][0]) / 2, atol=1e-5)
    cx = np.exp(cx_logits) / np.exp(cx_logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(cx, (alone[0][1] + alone[1][1]) / 2, atol=1e-5)
    routes = router.route_many([(t, None) for t in TEXTS], "embedding")
    assert [r.agent_type for r in routes] == [router.labels["agent_types"][k] for k in agent.argmax(-1)]
    # the router's embedding against its prototypes is the members' mean cosine similarity
    sims = emb @ router.prototypes.T
    p0 = load_file(str(folder / "prototypes.safetensors"))["prototypes"]
    p1 = load_file(str(folder / "members" / "1" / "prototypes.safetensors"))["prototypes"]
    e0, e1 = emb[:, :384] * np.sqrt(2), emb[:, 384:] * np.sqrt(2)
    np.testing.assert_allclose(sims, (e0 @ p0.T + e1 @ p1.T) / 2, atol=1e-5)
    with pytest.raises(ValueError, match="need 768"):
        router.heads(emb[:, :384], TEXTS)


@pytest.mark.slow
def test_every_member_is_exported_and_served_by_llamacpp(two_members):
    import gguf

    from ruvtrain_pipeline.core.router import Router, load_heads

    out = two_members.data / "gguf_export"
    md = two_members.result.asset_materializations_for_node("gguf_export")[0].metadata
    for tag in ("f32", "q8_0", "lora", "f32_m1", "q8_0_m1", "lora_m1"):
        assert md[f"cosine_min_{tag}"].value >= (0.99 if "q8" in tag else 0.999), tag
    for name in ("router-encoder-m1-f32.gguf", "router-encoder-m1-q8_0.gguf", "router-lora-m1.gguf",
                 "members/1/adapter/adapter_model.safetensors"):
        assert (out / name).exists(), name
    assert gguf.GGUFReader(str(out / "router-lora-m1.gguf")).get_field("adapter.type").contents() == "lora"
    labels, tensors, provenance = load_heads(out)
    assert labels["members"] == 2 and provenance["members"] == 2
    assert {"agent.weight", "m1.agent.weight", "m1.complexity.bias", "prototypes", "m1.prototypes"} <= set(tensors)
    torch_router = Router(out, backend="torch", tier_confidence=None)
    gguf_router = Router(out, backend="llamacpp", quantization="f32", tier_confidence=None)
    a_torch, _ = torch_router.heads(torch_router.embed(TEXTS), TEXTS)
    a_gguf, _ = gguf_router.heads(gguf_router.embed(TEXTS), TEXTS)
    np.testing.assert_allclose(a_gguf, a_torch, atol=2e-3)
    card = (out / "README.md").read_text()
    assert "2 members" in card and "member 1: adapted encoder" in card


def test_an_incomplete_member_is_named(tmp_path):
    """A folder that claims more members than it holds, or a bad member count, fails on load with the file named."""
    from safetensors.numpy import save_file

    from ruvtrain_pipeline.core.router import RouterError, load_heads

    rng = np.random.default_rng(0)
    heads = {"agent.weight": rng.normal(size=(13, 8)).astype(np.float32),
             "agent.bias": np.zeros(13, np.float32),
             "complexity.weight": rng.normal(size=(3, 8)).astype(np.float32),
             "complexity.bias": np.zeros(3, np.float32)}
    save_file(heads, str(tmp_path / "heads.safetensors"))
    save_file({"prototypes": rng.normal(size=(13, 8)).astype(np.float32)}, str(tmp_path / "prototypes.safetensors"))
    (tmp_path / "metadata.json").write_text("{}")
    (tmp_path / "labels.json").write_text(json.dumps({"members": 1}))
    assert set(load_heads(tmp_path)[1]) == {*heads, "prototypes"}
    (tmp_path / "labels.json").write_text(json.dumps({"members": 2}))
    with pytest.raises(RouterError, match=r"member 1 of 2 is incomplete .*members/1/heads\.safetensors"):
        load_heads(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"members": 0}))
    with pytest.raises(RouterError, match="members must be a positive integer, got 0"):
        load_heads(tmp_path)
