"""The committed Dagster instance config (.dagster_home/dagster.yaml): it loads, and its "dvc" pool really runs one
asset step at a time across a run's parallel steps."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import DagsterInstance

from ruvtrain_pipeline.definitions import defs
from ruvtrain_pipeline.resources import DVC_POOL

from .conftest import REPO_ROOT

INSTANCE_YAML = REPO_ROOT / ".dagster_home" / "dagster.yaml"


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(INSTANCE_YAML, home / "dagster.yaml")
    return home


def test_committed_instance_config(tmp_path, monkeypatch):
    home = _home(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        config = instance.get_concurrency_config()
        assert config.pool_config.pool_granularity.value == "op"
        assert config.pool_config.default_pool_limit == 1
        assert config.run_queue_config.max_concurrent_runs >= 1
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] > 0
        assert not instance.telemetry_enabled
        # the SQLite run history lives under DAGSTER_HOME, where the UI, the daemon and the CLI all look
        assert (home / "history" / "runs.db").exists()
        assert (home / "schedules").exists()


def test_every_asset_is_in_the_dvc_pool():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        if node.is_materializable:
            # a new asset: `pool=DVC_POOL` on @asset, end with `return versioned(context, storage, dvc, ...)`, and
            # give it a dvc.yaml stage whose outs is data/<asset>
            assert node.pools == {DVC_POOL}, f"{key.to_user_string()} is not in the '{DVC_POOL}' pool"


PROBE = '''
import json, os, time
from pathlib import Path
from dagster import Definitions, asset

OUT = Path(os.environ["PROBE_OUT"])

def _work(name):
    start = time.time()
    time.sleep(2)
    (OUT / f"{name}.json").write_text(json.dumps([start, time.time()]))

@asset(pool="dvc")
def left():
    _work("left")

@asset(pool="dvc")
def right():
    _work("right")

defs = Definitions(assets=[left, right])
'''


@pytest.mark.slow
def test_dvc_pool_serializes_parallel_steps(tmp_path):
    """Two independent assets in the pool, run by `dagster asset materialize` (multiprocess executor) against the
    committed instance config: their bodies never overlap."""
    home = _home(tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    env = os.environ | {"DAGSTER_HOME": str(home), "PROBE_OUT": str(tmp_path)}
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(dagster), "asset", "materialize", "-f", str(probe), "--select", "*"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (a_start, a_end), (b_start, b_end) = sorted(json.loads((tmp_path / f"{n}.json").read_text())
                                                for n in ("left", "right"))
    assert b_start >= a_end, "two steps of the dvc pool ran at the same time"
    assert "blocked by limit for pool dvc" in proc.stdout + proc.stderr
