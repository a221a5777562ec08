"""The quarterly retrain sends the production run config, and that config is valid for the whole chain."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import build_schedule_context

from ruvtrain_pipeline.definitions import defs
from ruvtrain_pipeline.schedules import PRODUCTION_CONFIG, RETRAIN_CONFIG_ENV, quarterly_retrain, retrain_run_config


def test_quarterly_retrain_sends_the_production_config():
    data = quarterly_retrain.evaluate_tick(build_schedule_context(scheduled_execution_time=datetime(2027, 1, 1, 3,
                                                                                                       tzinfo=UTC)))
    [request] = data.run_requests
    assert request.run_config == retrain_run_config()
    assert request.run_config["ops"]["trained_adapter"]["config"]["seed"] == 42
    assert request.tags["retrain"] == "2027Q1"


def test_production_config_is_valid_for_the_full_pipeline():
    from dagster._core.system_config.objects import ResolvedRunConfig

    job = defs.resolve_job_def("full_pipeline_job")
    ResolvedRunConfig.build(job, retrain_run_config())  # raises DagsterInvalidConfigError on a bad key or value
    assert PRODUCTION_CONFIG.is_file()


def test_the_quarterly_retrain_trains_what_make_run_trains():
    """`make run` / `dvc repro` materialize every asset with its defaults; the production config pins them. A value
    that differs from the default (as `epochs: 2` did after the default became 3) would make the scheduled retrain
    ship a router other than the one the evaluation report measured."""
    from dagster import AssetKey

    differs = []
    for op, body in retrain_run_config()["ops"].items():
        fields = defs.get_assets_def(AssetKey(op)).op.config_schema.config_type.fields
        for key, value in body.get("config", {}).items():
            field = fields[key]
            if not field.default_provided or field.default_value != value:
                differs.append(f"{op}.{key}: {value!r} (asset default "
                               f"{field.default_value if field.default_provided else 'none'!r})")
    assert not differs, f"{PRODUCTION_CONFIG} differs from the assets' defaults: {differs}"


def test_a_bad_retrain_config_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "retrain.yaml"
    bad.write_text("- just\n- a list\n")
    monkeypatch.setenv(RETRAIN_CONFIG_ENV, str(bad))
    with pytest.raises(ValueError, match=str(bad)):
        retrain_run_config()
    monkeypatch.setenv(RETRAIN_CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        retrain_run_config()
