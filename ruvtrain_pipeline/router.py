"""Public entry point: `from ruvtrain_pipeline.router import Router`."""

from .core.router import MODES, Router, RouterError, RouteResult, default_model_dir

__all__ = ["MODES", "Router", "RouterError", "RouteResult", "default_model_dir"]
