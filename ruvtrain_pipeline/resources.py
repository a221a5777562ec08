"""Dagster resources: where asset outputs live. (Anthropic, DVC and the base encoder join as their stages land.)"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource


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
