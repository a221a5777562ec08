"""Write a BERT sentence encoder (base weights + merged LoRA) as a llama.cpp BERT-architecture embedding GGUF.

Written with the `gguf` package: tensor names come from its BERT tensor-name map, keys from its writer API; the
WordPiece vocabulary is stored in llama.cpp's "phantom space" form (word starts marked with U+2581, "##" pieces bare).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

QUANT = {"f32": "F32", "f16": "F16", "q8_0": "Q8_0"}


def merged_bert_weights(base_dir: Path | str, adapter_dir: Path | str | None) -> dict[str, torch.Tensor]:
    """HF BERT weights with W' = W + (alpha / r) * B @ A for every LoRA-adapted linear layer."""
    base = {k: v.float() for k, v in load_file(str(Path(base_dir) / "model.safetensors")).items()}
    if adapter_dir is None:
        return base
    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    scale = float(cfg["lora_alpha"]) / float(cfg["r"])
    lora = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    prefix = "base_model.model."
    for key, a in lora.items():
        if ".lora_A." not in key:
            continue
        target = key.removeprefix(prefix).replace(".lora_A.weight", ".weight")
        b = lora[key.replace(".lora_A.", ".lora_B.")]
        if target not in base:
            raise KeyError(f"LoRA target {target} not in the base model")
        base[target] = base[target] + scale * (b.float() @ a.float())
    return base


def _phantom(token: str) -> str:
    if token.startswith("[") and token.endswith("]"):
        return token
    if token.startswith("##"):
        return token[2:]
    return "\u2581" + token


def write_bert_gguf(base_dir: Path | str, weights: dict[str, torch.Tensor], out: Path | str, qtype: str = "f32",
                    name: str = "ruvtrain-router-encoder") -> Path:
    import gguf

    base_dir = Path(base_dir)
    config = json.loads((base_dir / "config.json").read_text())
    vocab = [line.rstrip("\n") for line in (base_dir / "vocab.txt").read_text(encoding="utf-8").splitlines()]
    n_layers = int(config["num_hidden_layers"])
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]
    writer = gguf.GGUFWriter(str(out), "bert")
    writer.add_name(name)
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(n_layers)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config["layer_norm_eps"]))
    writer.add_causal_attention(False)
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_file_type(ftype)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([_phantom(t) for t in vocab])
    toktypes = [gguf.TokenType.CONTROL if (t.startswith("[") and t.endswith("]")) else gguf.TokenType.NORMAL
                for t in vocab]
    writer.add_token_types(toktypes)
    writer.add_token_type_count(int(config.get("type_vocab_size", 2)))
    ids = {t: i for i, t in enumerate(vocab)}
    writer.add_bos_token_id(ids["[CLS]"])
    writer.add_eos_token_id(ids["[SEP]"])
    writer.add_sep_token_id(ids["[SEP]"])
    writer.add_unk_token_id(ids["[UNK]"])
    writer.add_pad_token_id(ids["[PAD]"])
    writer.add_mask_token_id(ids["[MASK]"])
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    for hf_name, tensor in weights.items():
        if hf_name.endswith("position_ids") or hf_name.startswith("pooler."):
            continue
        new = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise KeyError(f"no GGUF name for tensor {hf_name}")
        data = tensor.detach().cpu().numpy().astype(np.float32)
        # norms, biases and other 1-D tensors stay f32; llama.cpp's token_types table too
        if qtype == "f32" or data.ndim == 1 or new == "token_types.weight":
            writer.add_tensor(new, data)
        elif qtype == "f16":
            writer.add_tensor(new, data.astype(np.float16))
        else:
            q = gguf.GGMLQuantizationType.Q8_0
            if data.shape[-1] % gguf.GGML_QUANT_SIZES[q][0] != 0:
                writer.add_tensor(new, data.astype(np.float16))
            else:
                writer.add_tensor(new, gguf.quants.quantize(data, q), raw_dtype=q)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def lora_tensors(adapter_dir: Path | str, n_layers: int) -> tuple[dict[str, np.ndarray], float]:
    """PEFT LoRA pairs renamed to llama.cpp's adapter names (`<base tensor>.lora_a` / `.lora_b`), and alpha.

    PEFT keeps A as (r, in) and B as (out, r) in torch order, which is exactly the layout llama.cpp checks
    (a.ne[0] == in, b.ne[1] == out, a.ne[1] == b.ne[0] == r), so no transpose is needed."""
    import gguf

    cfg = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    lora = load_file(str(Path(adapter_dir) / "adapter_model.safetensors"))
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    out: dict[str, np.ndarray] = {}
    for key, a in sorted(lora.items()):
        if ".lora_A." not in key:
            continue
        target = key.removeprefix("base_model.model.").replace(".lora_A.weight", ".weight")
        new = name_map.get_name(target, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise KeyError(f"no GGUF name for LoRA target {target}")
        out[f"{new}.lora_a"] = a.float().numpy()
        out[f"{new}.lora_b"] = lora[key.replace(".lora_A.", ".lora_B.")].float().numpy()
    if not out:
        raise ValueError(f"{adapter_dir}: adapter_model.safetensors holds no LoRA pairs")
    return out, float(cfg["lora_alpha"])


def write_lora_gguf(adapter_dir: Path | str, out: Path | str, n_layers: int,
                    name: str = "ruvtrain-router-lora") -> Path:
    """The LoRA adapter alone as a llama.cpp adapter GGUF, loadable on the base model with `--lora` / `lora_path`."""
    import gguf

    tensors, alpha = lora_tensors(adapter_dir, n_layers)
    writer = gguf.GGUFWriter(str(out), "bert")
    writer.add_name(name)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for tname, data in tensors.items():
        writer.add_tensor(tname, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def write_sidecar(router_dir: Path | str, out: Path | str, provenance: dict) -> Path:
    """Routing heads, agent prototypes, labels, routing table and provenance in a small GGUF of its own, so the
    encoder file stays a plain llama.cpp model."""
    import gguf

    from ..router import member_count, member_dir, member_prefix

    router_dir = Path(router_dir)
    labels = (router_dir / "labels.json").read_text(encoding="utf-8")
    writer = gguf.GGUFWriter(str(out), "ruvtrain-router")
    writer.add_name("ruvtrain-router-sidecar")
    writer.add_string("ruvtrain.labels", labels)
    writer.add_string("ruvtrain.provenance", json.dumps(provenance, sort_keys=True))
    # every member's heads and prototypes; member i >= 1 under the prefix m<i>. (router.load_heads)
    for i in range(member_count(json.loads(labels))):
        folder, prefix = member_dir(router_dir, i), member_prefix(i)
        heads = load_file(str(folder / "heads.safetensors"))
        protos = load_file(str(folder / "prototypes.safetensors"))["prototypes"]
        for name, tensor in sorted(heads.items()):
            writer.add_tensor(f"head.{prefix}{name}", tensor.float().numpy())
        writer.add_tensor(f"{prefix}prototypes", protos.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return Path(out)


def read_back(path: Path | str) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Tensor name -> shape (numpy order) and the metadata keys, read by gguf's own GGUFReader."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    # GGUFReader reports shapes in GGML order (reversed)
    shapes = {t.name: tuple(int(x) for x in reversed(list(t.shape))) for t in reader.tensors}
    return shapes, set(reader.fields)


def expected_shapes(weights: dict[str, torch.Tensor], n_layers: int) -> dict[str, tuple[int, ...]]:
    import gguf

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, n_layers)
    out = {}
    for hf_name, tensor in weights.items():
        if hf_name.endswith("position_ids") or hf_name.startswith("pooler."):
            continue
        out[name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))] = tuple(tensor.shape)
    return out


def llamacpp_cosines(gguf_path: Path | str, texts: list[str], reference: np.ndarray, threads: int = 2,
                     lora_path: Path | str | None = None) -> np.ndarray:
    """Cosine of llama.cpp's normalized embeddings against reference (normalized) embeddings, per text; with
    `lora_path`, llama.cpp applies the adapter GGUF on top of the model at `gguf_path`."""
    from llama_cpp import Llama

    llm = Llama(model_path=str(gguf_path), embedding=True, n_ctx=512, n_threads=threads, verbose=False,
                lora_path=str(lora_path) if lora_path else None)
    got = np.array([llm.embed(t, normalize=True) for t in texts], dtype=np.float32)
    return (got * reference).sum(axis=1)
