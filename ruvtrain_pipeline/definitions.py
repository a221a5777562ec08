"""The one Definitions object of the project: assets, checks, jobs and resources."""

from __future__ import annotations

import os

from dagster import Definitions, load_assets_from_modules

from .assets import dataset
from .jobs import dataset_job, full_pipeline_job
from .resources import PipelineStorage

all_assets = load_assets_from_modules([dataset])

defs = Definitions(
    assets=all_assets,
    jobs=[dataset_job, full_pipeline_job],
    resources={"storage": PipelineStorage(data_dir=os.environ.get("RUVTRAIN_DATA_DIR", "data"))},
)
