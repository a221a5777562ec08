"""gguf_export: the trained encoder (base + merged LoRA) as llama.cpp BERT embedding GGUFs in f32, f16 and q8_0,
the LoRA adapter alone as a llama.cpp adapter GGUF over the base model, and a sidecar GGUF with heads, prototypes,
labels and provenance. Verified by GGUFReader and by llama.cpp itself; every quantization is scored on the validation
split through the router's llamacpp backend."""

import json
import shutil

import polars as pl
from dagster import (
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    DataVersion,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from ..core.io import atomic_dir, dir_digest
from ..resources import DVC_POOL, BaseEncoder, DvcResource, PipelineStorage
from ._meta import check, versioned

MIN_COSINE = {"f32": 0.999, "f16": 0.999, "q8_0": 0.99}


class GgufExportConfig(Config):
    quantizations: list[str] = Field(default_factory=lambda: ["f32", "f16", "q8_0"])
    verify_texts: int = Field(default=200, description="Test-split requests embedded by torch and by llama.cpp.")
    base_quantization: str = Field(default="f16", description="Type of the unadapted base GGUF the LoRA GGUF loads on.")
    score_validation: int = Field(default=0, description="Validation rows scored per quantization (0 = all).")


@asset(
    pool=DVC_POOL,
    group_name="export",
    deps=["trained_adapter"],
    description="llama.cpp BERT embedding GGUFs (f32, f16, q8_0) of the adapted encoder, the LoRA adapter GGUF over "
    "the base GGUF, and a sidecar GGUF with the routing heads, prototypes, labels and provenance; verified by "
    "GGUFReader and llama.cpp, each quantization scored on the validation split.",
    check_specs=[AssetCheckSpec("gguf_verified", asset="gguf_export", blocking=True)],
)
def gguf_export(
    context: AssetExecutionContext, config: GgufExportConfig, storage: PipelineStorage, encoder: BaseEncoder,
    dvc: DvcResource,
) -> MaterializeResult:
    from pathlib import Path

    from ..core.cards import write_model_card
    from ..core.export.gguf_bert import (
        QUANT,
        expected_shapes,
        llamacpp_cosines,
        lora_tensors,
        merged_bert_weights,
        read_back,
        write_bert_gguf,
        write_lora_gguf,
        write_sidecar,
    )
    from ..core.router import Router, member_dir, member_gguf

    bad = [q for q in [*config.quantizations, config.base_quantization] if q not in QUANT]
    if bad:
        raise ValueError(f"gguf_export.quantizations: unknown {bad}; use {list(QUANT)}")
    router_dir = storage.asset_dir("trained_adapter")
    storage.require("trained_adapter", "heads.safetensors")
    base_dir = Path(encoder.resolved_path())
    # Router loads every member's heads (RouterError when one is incomplete) before any file is written
    torch_router = Router(router_dir, base_model=str(base_dir))
    members = torch_router.members
    adapters = [member_dir(router_dir, i) / "adapter" for i in range(members)]
    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    trained_on = (json.loads((router_dir / "metadata.json").read_text(encoding="utf-8")).get("data_versions")
                  or {}).get("dataset_splits")
    # dataset_splits: the promotion gate compares a champion and a challenger on the test split only when both were
    # trained on the same splits (a redrawn test split may hold templates the champion trained on)
    provenance = {"trained_adapter": dir_digest(router_dir), "base_model": str(base_dir),
                  "quantizations": config.quantizations, "dataset_splits": trained_on,
                  **({"members": members} if members > 1 else {})}
    out_dir = storage.asset_dir("gguf_export")
    problems: list[str] = []
    meta: dict = {}
    texts = pl.read_parquet(storage.require("dataset_splits", "data/test.parquet"))["input"].to_list()
    texts = texts[: config.verify_texts]
    with atomic_dir(out_dir) as tmp:
        base_gguf = write_bert_gguf(base_dir, merged_bert_weights(base_dir, None),
                                    tmp / f"router-base-{config.base_quantization}.gguf", config.base_quantization,
                                    name="ruvtrain-router-base")
        write_sidecar(router_dir, tmp / "router-sidecar.gguf", provenance)
        side_shapes, side_keys = read_back(tmp / "router-sidecar.gguf")
        if "prototypes" not in side_shapes or "ruvtrain.labels" not in side_keys:
            problems.append("router-sidecar.gguf: prototypes or labels missing")
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            problems.append("llama-cpp-python is not installed: the export cannot be verified by llama.cpp")
            llama_cpp = None
        # each member (router.py): its encoder in every quantization, its LoRA over the base GGUF, and its
        # safetensors adapter too, so the export folder serves the torch backend as well
        member_encoders = torch_router.encoder.encoders if members > 1 else [torch_router.encoder]
        for i, adapter in enumerate(adapters):
            weights = merged_bert_weights(base_dir, adapter)
            files = {q: write_bert_gguf(base_dir, weights, tmp / member_gguf(i, "router-encoder", q), q)
                     for q in config.quantizations}
            lora_gguf = write_lora_gguf(adapter, tmp / member_gguf(i, "router-lora"), n_layers)
            shutil.copytree(adapter, member_dir(tmp, i) / "adapter")
            # round trip: every tensor and the keys llama.cpp needs, read back by an independent reader
            want = expected_shapes(weights, n_layers)
            for path in [*files.values(), *([base_gguf] if i == 0 else [])]:
                shapes, keys = read_back(path)
                if shapes != want:
                    problems.append(f"{path.name}: tensors read back differ from the model "
                                    f"({len(set(shapes) ^ set(want))} names differ)")
                for key in ("general.architecture", "bert.block_count", "bert.pooling_type", "tokenizer.ggml.model",
                            "tokenizer.ggml.tokens"):
                    if key not in keys:
                        problems.append(f"{path.name}: key {key} missing")
            lora_want = {k: tuple(v.shape) for k, v in lora_tensors(adapter, n_layers)[0].items()}
            lora_shapes, lora_keys = read_back(lora_gguf)
            if lora_shapes != lora_want:
                problems.append(f"{lora_gguf.name}: LoRA tensors read back differ "
                                f"({len(set(lora_shapes) ^ set(lora_want))})")
            for key in ("general.type", "adapter.type", "adapter.lora.alpha"):
                if key not in lora_keys:
                    problems.append(f"{lora_gguf.name}: key {key} missing")
            if llama_cpp is None:
                continue
            # llama.cpp itself: embeddings of held-out requests must match the torch model (member i's encoder);
            # member 0's figures keep the single-member names, member i's carry _m<i>
            reference = member_encoders[i].embed(texts)
            checks = {q: (path, None) for q, path in files.items()} | {"lora": (base_gguf, lora_gguf)}
            for q, (path, lora) in checks.items():
                cos = llamacpp_cosines(path, texts, reference, lora_path=lora)
                tag = f"{q}_m{i}" if i else q
                meta[f"cosine_min_{tag}"] = round(float(cos.min()), 6)
                meta[f"cosine_mean_{tag}"] = round(float(cos.mean()), 6)
                floor = MIN_COSINE["f32" if q == "lora" else q]
                if cos.min() < floor:
                    problems.append(f"{path.name}{' + ' + lora.name if lora else ''}: llama.cpp cosine min "
                                    f"{cos.min():.5f} < {floor}")
        if llama_cpp is not None:
            meta |= _validation_accuracy(storage, tmp, torch_router, list(config.quantizations),
                                         config.score_validation)
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir() if p.is_file()}
        (tmp / "export.json").write_text(json.dumps({"provenance": provenance, "sizes": sizes, **meta}, indent=2,
                                                    sort_keys=True) + "\n", encoding="utf-8")
        # model card (README.md) from the files above; evaluation figures when a report scored this trained adapter
        write_model_card(tmp, router_dir, storage.asset_dir("evaluation_report") / "results.json")
    f32 = sizes.get("router-encoder-f32.gguf")
    if f32 and "router-encoder-q8_0.gguf" in sizes:
        meta["q8_0_size_share_of_f32"] = round(sizes["router-encoder-q8_0.gguf"] / f32, 4)
    context.log.info(f"gguf_export: {sizes}; {meta}")
    return versioned(context, storage, dvc, MaterializeResult(
        metadata={**meta, "files": MetadataValue.json(sizes), "verify_texts": len(texts),
                  "path": MetadataValue.path(str(out_dir))},
        check_results=[check("gguf_verified", problems, **{k: v for k, v in meta.items() if k.startswith("cosine_min")})],
        data_version=DataVersion(dir_digest(out_dir)),
    ))



def _validation_accuracy(storage: PipelineStorage, export_dir, torch_router, quantizations: list[str],
                         limit: int) -> dict:
    """Agent-type accuracy (embedding heads, and hybrid) of the torch model and of each GGUF quantization through
    the router's llamacpp backend, on the same validation rows."""
    from ..core.router import Router

    val = pl.read_parquet(storage.require("dataset_splits", "data/validation.parquet"))
    if limit:
        val = val.head(limit)
    requests = list(zip(val["input"], val["context"], strict=True))
    truth = val["metadata"].struct.field("agent_type").to_list()
    out = {"validation_rows_scored": len(requests)}
    routers = {"torch": torch_router} | {q: Router(export_dir, backend="llamacpp", quantization=q)
                                         for q in quantizations}
    for name, router in routers.items():
        texts, emb, views = router.embed_requests(requests)
        for mode in ("embedding", "hybrid"):
            got = [r.agent_type for r in router.route_embedded(texts, emb, mode, views=views)]
            acc = sum(g == t for g, t in zip(got, truth, strict=True)) / max(len(truth), 1)
            out[f"val_agent_acc_{mode}_{name}"] = round(acc, 4)
    return out
