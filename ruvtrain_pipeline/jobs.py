"""Jobs: the dataset half of the chain, and the whole chain."""

from dagster import AssetSelection, define_asset_job

dataset_job = define_asset_job(
    "dataset_job",
    selection=AssetSelection.groups("dataset"),
    description="Templates -> base -> augmented -> hard negatives -> splits.",
)
training_job = define_asset_job("training_job", selection=AssetSelection.groups("training"),
                                description="Train the adapter and heads on the current dataset splits.")
full_pipeline_job = define_asset_job("full_pipeline_job", selection=AssetSelection.all(),
                                     description="Every asset of the chain.")
