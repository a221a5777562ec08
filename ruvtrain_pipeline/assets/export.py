"""gguf_export: the trained encoder (base + merged LoRA) as llama.cpp BERT embedding GGUFs in f32, f16 and q8_0,
plus a sidecar GGUF with heads, prototypes, labels and provenance. Verified by GGUFReader and by llama.cpp itself."""

import json

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
from ..resources import BaseEncoder, PipelineStorage
from ._meta import check

MIN_COSINE = {"f32": 0.999, "f16": 0.999, "q8_0": 0.99}


class GgufExportConfig(Config):
    quantizations: list[str] = Field(default_factory=lambda: ["f32", "f16", "q8_0"])
    verify_texts: int = Field(default=200, description="Test-split requests embedded by torch and by llama.cpp.")


@asset(
    group_name="export",
    deps=["trained_adapter"],
    description="llama.cpp BERT embedding GGUFs (f32, f16, q8_0) of the adapted encoder and a sidecar GGUF with the "
    "routing heads, prototypes, labels and provenance; verified by GGUFReader and llama.cpp.",
    check_specs=[AssetCheckSpec("gguf_verified", asset="gguf_export", blocking=True)],
)
def gguf_export(
    context: AssetExecutionContext, config: GgufExportConfig, storage: PipelineStorage, encoder: BaseEncoder
) -> MaterializeResult:
    from pathlib import Path

    from ..core.export.gguf_bert import (
        QUANT,
        expected_shapes,
        llamacpp_cosines,
        merged_bert_weights,
        read_back,
        write_bert_gguf,
        write_sidecar,
    )
    from ..core.router import Router

    bad = [q for q in config.quantizations if q not in QUANT]
    if bad:
        raise ValueError(f"gguf_export.quantizations: unknown {bad}; use {list(QUANT)}")
    router_dir = storage.asset_dir("trained_adapter")
    storage.require("trained_adapter", "heads.safetensors")
    base_dir = Path(encoder.resolved_path())
    weights = merged_bert_weights(base_dir, router_dir / "adapter")
    n_layers = json.loads((base_dir / "config.json").read_text())["num_hidden_layers"]
    provenance = {"trained_adapter": dir_digest(router_dir), "base_model": str(base_dir),
                  "quantizations": config.quantizations}
    out_dir = storage.asset_dir("gguf_export")
    problems: list[str] = []
    meta: dict = {}
    with atomic_dir(out_dir) as tmp:
        files = {}
        for q in config.quantizations:
            files[q] = write_bert_gguf(base_dir, weights, tmp / f"router-encoder-{q}.gguf", q)
        write_sidecar(router_dir, tmp / "router-sidecar.gguf", provenance)
        # round trip: every tensor and the keys llama.cpp needs, read back by an independent reader
        want = expected_shapes(weights, n_layers)
        for path in files.values():
            shapes, keys = read_back(path)
            if shapes != want:
                problems.append(f"{path.name}: tensors read back differ from the model "
                                f"({len(set(shapes) ^ set(want))} names differ)")
            for key in ("general.architecture", "bert.block_count", "bert.pooling_type", "tokenizer.ggml.model",
                        "tokenizer.ggml.tokens"):
                if key not in keys:
                    problems.append(f"{path.name}: key {key} missing")
        side_shapes, side_keys = read_back(tmp / "router-sidecar.gguf")
        if "prototypes" not in side_shapes or "ruvtrain.labels" not in side_keys:
            problems.append("router-sidecar.gguf: prototypes or labels missing")
        # llama.cpp itself: embeddings of held-out requests must match the torch model
        texts = pl.read_parquet(storage.require("dataset_splits", "data/test.parquet"))["input"].to_list()
        texts = texts[: config.verify_texts]
        reference = Router(router_dir, base_model=str(base_dir)).embed(texts).numpy()
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            problems.append("llama-cpp-python is not installed: the export cannot be verified by llama.cpp")
        else:
            for q, path in files.items():
                cos = llamacpp_cosines(path, texts, reference)
                meta[f"cosine_min_{q}"] = round(float(cos.min()), 6)
                meta[f"cosine_mean_{q}"] = round(float(cos.mean()), 6)
                if cos.min() < MIN_COSINE[q]:
                    problems.append(f"{path.name}: llama.cpp cosine min {cos.min():.5f} < {MIN_COSINE[q]}")
        sizes = {p.name: p.stat().st_size for p in tmp.iterdir()}
        (tmp / "export.json").write_text(json.dumps({"provenance": provenance, "sizes": sizes, **meta}, indent=2,
                                                    sort_keys=True) + "\n", encoding="utf-8")
    f32 = sizes.get("router-encoder-f32.gguf")
    if f32 and "router-encoder-q8_0.gguf" in sizes:
        meta["q8_0_size_share_of_f32"] = round(sizes["router-encoder-q8_0.gguf"] / f32, 4)
    context.log.info(f"gguf_export: {sizes}; {meta}")
    return MaterializeResult(
        metadata={**meta, "files": MetadataValue.json(sizes), "verify_texts": len(texts),
                  "path": MetadataValue.path(str(out_dir))},
        check_results=[check("gguf_verified", problems, **{k: v for k, v in meta.items() if k.startswith("cosine_min")})],
        data_version=DataVersion(dir_digest(out_dir)),
    )

