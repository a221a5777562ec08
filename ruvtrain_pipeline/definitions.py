"""The one Definitions object of the project: assets, checks, jobs and resources."""

from __future__ import annotations

import os

from dagster import Definitions, EnvVar, load_assets_from_modules

from .assets import dataset, evaluation, export, feedback, lifecycle, training
from .assets import monitoring as monitoring_assets  # `monitoring` is the schedule
from .jobs import dataset_job, full_pipeline_job, training_job
from .resources import AnthropicResource, BaseEncoder, DvcResource, PipelineStorage
from .schedules import monitoring, monitoring_job, quarterly_retrain, review_job, weekly_review
from .sensors import feedback_retrain_job, feedback_sensor, retrain_tag_sensor

all_assets = load_assets_from_modules([dataset, training, export, evaluation, feedback, lifecycle, monitoring_assets])

defs = Definitions(
    assets=all_assets,
    jobs=[dataset_job, training_job, full_pipeline_job, feedback_retrain_job, monitoring_job, review_job],
    schedules=[quarterly_retrain, monitoring, weekly_review],
    sensors=[feedback_sensor, retrain_tag_sensor],
    resources={
        "storage": PipelineStorage(data_dir=os.environ.get("RUVTRAIN_DATA_DIR", "data")),
        # every materialization is recorded by DVC (see resources.DvcResource); the remote and its credentials stay
        # in DVC's own config, only the remote's name reaches the metadata
        "dvc": DvcResource(
            enabled=os.environ.get("RUVTRAIN_DVC", "on") != "off",
            push=os.environ.get("RUVTRAIN_DVC_PUSH", "1") != "0",
            remote=os.environ.get("RUVTRAIN_DVC_REMOTE", ""),
            strict=os.environ.get("RUVTRAIN_DVC_STRICT", "0") == "1",
        ),
        # EnvVar keeps the key out of the run config shown in the UI; without it the pipeline runs offline (mined)
        "anthropic": AnthropicResource(
            api_key=EnvVar("ANTHROPIC_API_KEY") if os.environ.get("ANTHROPIC_API_KEY") else None,
            base_url=os.environ.get("RUVTRAIN_ANTHROPIC_BASE_URL") or None,
            cache_dir=os.environ.get("RUVTRAIN_ANTHROPIC_CACHE", ".cache/anthropic"),
        ),
        "encoder": BaseEncoder(model_path=os.environ.get("RUVTRAIN_BASE_MODEL", "")),
    },
)
