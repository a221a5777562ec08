"""The router people use: loads a trained export and routes a request to an agent type, its category, a complexity
and the cheapest adequate Claude tier. Hybrid by default: keyword rules first (catalog/keywords.yaml, derived from the
templates), the embedding heads when no rule is confident. Backend: torch (safetensors adapter)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .keywords import KEYWORDS_FILE, KeywordMatcher

MODES = ("hybrid", "embedding", "keyword")


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


def _text(request: str, context: str | None) -> str:
    request = request.strip()
    return f"{request} {context.strip()}" if context and context.strip() else request


class Router:
    """Router over a `trained_adapter` folder (adapter/, heads.safetensors, prototypes.safetensors, labels.json)."""

    def __init__(self, model_dir: Path | str, keywords: Path | str = KEYWORDS_FILE, base_model: str | None = None,
                 device: str = "cpu") -> None:
        from safetensors.torch import load_file

        self.model_dir = Path(model_dir)
        needed = ["adapter", "heads.safetensors", "prototypes.safetensors", "labels.json", "metadata.json"]
        missing = [n for n in needed if not (self.model_dir / n).exists()]
        if missing:
            raise RouterError(f"{self.model_dir}: not a trained router folder (missing {', '.join(missing)})")
        self.labels = json.loads((self.model_dir / "labels.json").read_text(encoding="utf-8"))
        meta = json.loads((self.model_dir / "metadata.json").read_text(encoding="utf-8"))
        self.base_model = base_model or os.environ.get("RUVTRAIN_BASE_MODEL") or meta["base_model"]
        self.device = device
        heads = load_file(str(self.model_dir / "heads.safetensors"))
        self._agent_w, self._agent_b = heads["agent.weight"], heads["agent.bias"]
        self._cx_w, self._cx_b = heads["complexity.weight"], heads["complexity.bias"]
        self.prototypes = load_file(str(self.model_dir / "prototypes.safetensors"))["prototypes"]
        self.keywords = KeywordMatcher.load(keywords)
        self._encoder: Any = None

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(self.base_model, device=self.device)
            model.load_adapter(str(self.model_dir / "adapter"))
            model.eval()
            self._encoder = model
        return self._encoder

    def embed(self, texts: list[str]) -> torch.Tensor:
        with torch.no_grad():
            return self.encoder.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                                       show_progress_bar=False).float().cpu()

    def _tier(self, agent_type: str, complexity: str) -> str:
        return self.labels["routing_table"][self.labels["agent_category"][agent_type]][complexity]

    def route_many(self, requests: list[tuple[str, str | None]], mode: str = "hybrid") -> list[RouteResult]:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        texts = [_text(r, c) for r, c in requests]
        agents = self.labels["agent_types"]
        cxs = self.labels["complexities"]
        emb = self.embed(texts) if texts else torch.zeros(0, self.prototypes.shape[1])
        with torch.no_grad():
            a_prob = torch.softmax(emb @ self._agent_w.T + self._agent_b, -1)
            cx_idx = (emb @ self._cx_w.T + self._cx_b).argmax(-1)
        out = []
        for i, text in enumerate(texts):
            complexity = cxs[int(cx_idx[i])]
            top2 = torch.topk(a_prob[i], 2)
            emb_agent, emb_conf = agents[int(top2.indices[0])], float(top2.values[0])
            emb_runner = agents[int(top2.indices[1])]
            kw_agent, kw_conf, kw_runner = (None, 0.0, None) if mode == "embedding" else self.keywords.decide(text)
            if kw_agent is not None:
                agent, conf, method, runner = kw_agent, kw_conf, "keyword", kw_runner or emb_runner
            elif mode == "keyword":
                agent, conf, method, runner = None, 0.0, "keyword", kw_runner
            else:
                agent, conf, method, runner = emb_agent, emb_conf, "embedding", emb_runner
            out.append(RouteResult(
                agent_type=agent,
                agent=self.labels["agent_category"][agent] if agent else None,
                complexity=complexity,
                model=self._tier(agent, complexity) if agent else None,
                confidence=round(conf, 4),
                method=method,
                runner_up=runner if runner != agent else None,
            ))
        return out

    def route(self, request: str, context: str | None = None, mode: str = "hybrid") -> RouteResult:
        return self.route_many([(request, context)], mode)[0]


def default_model_dir(data_dir: Path | str = "data") -> Path:
    """The latest materialized router under data/ (the GGUF export once it exists, else the trained adapter)."""
    root = Path(os.environ.get("RUVTRAIN_DATA_DIR", data_dir))
    for name in ("trained_adapter",):
        if (root / name / "heads.safetensors").exists():
            return root / name
    raise RouterError(f"no trained router under {root.resolve()}: run `make run` (or materialize trained_adapter) "
                      "or pass --model PATH")
