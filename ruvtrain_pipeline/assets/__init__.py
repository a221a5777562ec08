"""Thin Dagster assets, one module per stage group; logic lives in ruvtrain_pipeline.core."""
