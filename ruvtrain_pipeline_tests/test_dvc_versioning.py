"""DVC versioning of every materialization, for real: a temporary git + DVC repository whose dvc.yaml holds the
project's own stages, the real `dvc` command line, and the assets materialized in-process on a tiny catalog."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance, SkipReason, build_run_status_sensor_context, materialize

from ruvtrain_pipeline.assets.dataset import base_examples, seed_templates
from ruvtrain_pipeline.core import versioning
from ruvtrain_pipeline.resources import DvcResource, PipelineStorage
from ruvtrain_pipeline.schedules import RETRAIN_TAG
from ruvtrain_pipeline.sensors import retrain_tag_sensor

from .conftest import REPO_ROOT

STAGES = ["seed_templates", "base_examples"]


def _git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout.strip()


def _dvc(root: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def dvc_repo_template(tmp_path_factory) -> Path:
    """A git repository with `dvc init`, the project's seed_templates and base_examples stages (their code deps left
    out: the code is not in this repository) and data/ git-ignored, all committed. Built once, copied per test."""
    root = tmp_path_factory.mktemp("dvc_template") / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    _git(root, "config", "user.email", "test@example.com")
    _git(root, "config", "user.name", "test")
    _dvc(root, "init", "-q")
    _dvc(root, "config", "core.analytics", "false")
    project = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    stages = {name: {"cmd": project[name]["cmd"],
                     **({"deps": deps} if (deps := [d for d in project[name].get("deps", [])
                                                    if d.startswith("data/")]) else {}),
                     "outs": project[name]["outs"]} for name in STAGES}
    (root / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))
    (root / ".gitignore").write_text("/data/*\n")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "dvc project")
    return root


@pytest.fixture
def dvc_repo(dvc_repo_template: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(dvc_repo_template, tmp_path / "repo", symlinks=True))


def _materialize(root: Path, catalog_dir: Path, seed: int = 1, dvc: DvcResource | None = None, assets=None,
                 **kwargs):
    assets = assets or [seed_templates, base_examples]
    ops = {"seed_templates": {"config": {"catalog_dir": str(catalog_dir), "min_templates_per_agent": 3}},
           "base_examples": {"config": {"examples_per_agent": 4, "seed": seed}}}
    return materialize(
        assets,
        resources={"storage": PipelineStorage(data_dir=str(root / "data")), "dvc": dvc or DvcResource()},
        run_config={"ops": {a.op.name: ops[a.op.name] for a in assets}},
        **kwargs,
    )


def _meta(result, asset: str) -> dict:
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def _lock(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.lock").read_text())["stages"]


def test_materialization_is_committed_with_hash_and_git_commit(dvc_repo, tiny_catalog_dir):
    result = _materialize(dvc_repo, tiny_catalog_dir)
    assert result.success
    lock = _lock(dvc_repo)
    head = _git(dvc_repo, "rev-parse", "--short", "HEAD")
    for name in STAGES:
        [out] = lock[name]["outs"]
        assert out["path"] == f"data/{name}"
        meta = _meta(result, name)
        assert meta["dvc/stage"] == name
        assert meta["dvc/md5"] == out["md5"] and meta["dvc/md5"].endswith(".dir")
        assert meta["dvc/nfiles"] == out["nfiles"] > 0
        assert meta["git/commit"] == head and meta["git/dirty"] is False
        assert meta["dvc/remote"] == "none configured" and meta["dvc/pushed"] is False
        md5 = out["md5"]
        assert (dvc_repo / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    # the recorded deps are the upstream's committed version, so the pipeline as a whole is up to date
    assert lock["base_examples"]["deps"][0]["md5"] == lock["seed_templates"]["outs"][0]["md5"]
    assert "Data and pipelines are up to date" in _dvc(dvc_repo, "status")
    # a code change (a tracked file) shows as a dirty checkout in the next version's metadata
    (dvc_repo / "dvc.yaml").write_text((dvc_repo / "dvc.yaml").read_text() + "# edited\n")
    again = _materialize(dvc_repo, tiny_catalog_dir, assets=[seed_templates])
    assert _meta(again, "seed_templates")["git/dirty"] is True


def test_checkout_of_an_earlier_dvc_lock_restores_its_bytes(dvc_repo, tiny_catalog_dir):
    examples = dvc_repo / "data" / "base_examples" / "examples.jsonl"
    assert _materialize(dvc_repo, tiny_catalog_dir, seed=1).success
    _git(dvc_repo, "add", "dvc.lock")
    _git(dvc_repo, "commit", "-q", "-m", "seed 1")
    version_a = _git(dvc_repo, "rev-parse", "HEAD")
    bytes_a = examples.read_bytes()
    assert _materialize(dvc_repo, tiny_catalog_dir, seed=2).success
    bytes_b, lock_b = examples.read_bytes(), (dvc_repo / "dvc.lock").read_text()
    assert bytes_b != bytes_a
    assert _lock(dvc_repo)["base_examples"]["outs"][0]["md5"] != yaml.safe_load(
        _git(dvc_repo, "show", f"{version_a}:dvc.lock"))["stages"]["base_examples"]["outs"][0]["md5"]

    _git(dvc_repo, "checkout", version_a, "--", "dvc.lock")
    _dvc(dvc_repo, "checkout", "--force")
    assert examples.read_bytes() == bytes_a
    assert "Data and pipelines are up to date" in _dvc(dvc_repo, "status")
    # and forward again: B's bytes are in the cache too
    (dvc_repo / "dvc.lock").write_text(lock_b)
    _dvc(dvc_repo, "checkout", "--force", "base_examples")
    assert examples.read_bytes() == bytes_b


def test_under_dvc_repro_of_this_repo_nothing_is_recorded(dvc_repo, tiny_catalog_dir, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "base_examples")
    monkeypatch.setenv("DVC_ROOT", str(dvc_repo))
    result = _materialize(dvc_repo, tiny_catalog_dir)
    assert result.success
    assert not (dvc_repo / "dvc.lock").exists()
    meta = _meta(result, "base_examples")
    assert meta["dvc"] == "recorded by `dvc repro` (stage base_examples)"
    assert meta["dvc/stage"] == "base_examples" and "dvc/md5" not in meta
    # a `dvc repro` of another repository does not hold this one's lock: record as usual
    monkeypatch.setenv("DVC_ROOT", str(dvc_repo.parent))
    assert _materialize(dvc_repo, tiny_catalog_dir, assets=[seed_templates]).success
    assert "seed_templates" in _lock(dvc_repo)


@pytest.mark.slow
def test_dvc_repro_runs_the_stage_through_dagster_without_deadlock(dvc_repo, tmp_path):
    """The stage's real cmd (`dagster asset materialize ... --select seed_templates`) under `dvc repro`: the asset
    must not wait for the lock DVC holds while running it, and DVC records the output itself."""
    venv_bin = str(Path(sys.executable).parent)
    env = os.environ | {"PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
                        "DAGSTER_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("RUVTRAIN_DATA_DIR", None)
    (tmp_path / "home").mkdir()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "seed_templates"], cwd=dvc_repo, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "running as `dvc repro` stage seed_templates" in proc.stdout + proc.stderr
    assert _lock(dvc_repo)["seed_templates"]["outs"][0]["path"] == "data/seed_templates"
    assert "seed_templates" not in _dvc(dvc_repo, "status", "seed_templates")


def test_push_to_a_local_remote(dvc_repo, tiny_catalog_dir, tmp_path):
    remote = tmp_path / "remote"
    _dvc(dvc_repo, "remote", "add", "--local", "-d", "store", str(remote))
    result = _materialize(dvc_repo, tiny_catalog_dir)
    assert result.success
    for name in STAGES:
        meta = _meta(result, name)
        assert meta["dvc/remote"] == "store" and meta["dvc/pushed"] is True
        assert not any(str(remote) in str(v) for v in meta.values())  # the remote's name, never its URL
        md5 = meta["dvc/md5"]
        assert (remote / "files" / "md5" / md5[:2] / md5[2:]).is_file()
    assert "in sync" in _dvc(dvc_repo, "status", "--cloud")
    # the remote alone restores the data: empty the cache and the workspace, then pull
    shutil.rmtree(dvc_repo / ".dvc" / "cache")
    shutil.rmtree(dvc_repo / "data")
    _dvc(dvc_repo, "pull")
    assert (dvc_repo / "data" / "base_examples" / "examples.jsonl").stat().st_size > 0
    # push=False records locally only
    off = _materialize(dvc_repo, tiny_catalog_dir, seed=5, dvc=DvcResource(push=False), assets=[seed_templates])
    assert _meta(off, "seed_templates")["dvc/pushed"] is False


def test_outside_a_dvc_project_it_says_so_unless_strict(tmp_path, tiny_catalog_dir):
    result = _materialize(tmp_path, tiny_catalog_dir, assets=[seed_templates])
    assert result.success
    assert _meta(result, "seed_templates")["dvc"].startswith("not a DVC project")
    strict = _materialize(tmp_path, tiny_catalog_dir, assets=[seed_templates], dvc=DvcResource(strict=True),
                          raise_on_error=False)
    assert not strict.success
    assert "not a DVC project" in strict.get_step_failure_events()[0].step_failure_data.error.to_string()


def test_a_folder_no_stage_outputs_is_not_versioned(dvc_repo, tiny_catalog_dir):
    meta = DvcResource().record(dvc_repo / "scratch" / "seed_templates")
    assert meta["dvc"].startswith("no stage in") and "dvc/md5" not in meta
    with pytest.raises(versioning.VersioningError, match="strict"):
        DvcResource(strict=True).record(dvc_repo / "scratch" / "seed_templates")


def test_an_upstream_folder_that_does_not_exist_leaves_the_stage_unversioned_and_the_data_kept(dvc_repo,
                                                                                             tiny_catalog_dir):
    # base_examples' stage depends on data/seed_templates; DVC cannot commit it while that folder is missing
    # (the case of dataset_splits materialized before feedback_examples ever was)
    assert _materialize(dvc_repo, tiny_catalog_dir).success
    shutil.rmtree(dvc_repo / "data" / "seed_templates")
    out = dvc_repo / "data" / "base_examples"
    meta = DvcResource().record(out)
    assert "depends on data/seed_templates, which does not exist yet" in meta["dvc"] and "dvc/md5" not in meta
    assert out.is_dir() and any(out.iterdir())
    with pytest.raises(versioning.VersioningError, match="strict"):
        DvcResource(strict=True).record(out)


def test_dvc_lock_held_by_another_process_is_waited_for(dvc_repo, tiny_catalog_dir):
    from dvc.repo import Repo

    assert _materialize(dvc_repo, tiny_catalog_dir, assets=[seed_templates]).success
    repo = Repo(str(dvc_repo))
    repo.lock.lock()  # what a concurrent `dvc` command holds; DVC itself gives up after ~3 s
    release = threading.Timer(5.0, repo.lock.unlock)
    release.start()
    try:
        t0 = time.monotonic()
        meta = DvcResource(lock_timeout_s=60).record(dvc_repo / "data" / "seed_templates")
        waited = time.monotonic() - t0
    finally:
        release.join()
        repo.close()
    assert waited >= 4.5
    assert meta["dvc/md5"] == _lock(dvc_repo)["seed_templates"]["outs"][0]["md5"]
    with pytest.raises(versioning.VersioningError, match="Unable to acquire lock"):
        repo = Repo(str(dvc_repo))
        repo.lock.lock()
        try:
            DvcResource(lock_timeout_s=0).record(dvc_repo / "data" / "seed_templates")
        finally:
            repo.lock.unlock()
            repo.close()


def test_redact_drops_url_credentials():
    assert versioning.redact("failed: s3://AKIAXX:s3cr3t@bucket.example/x") == "failed: s3://***@bucket.example/x"
    assert versioning.redact("/local/remote and s3://bucket/x") == "/local/remote and s3://bucket/x"


# ---------------------------------------------------------------- quarterly retrain tag
def _sensor_context(instance, result, root: Path):
    return build_run_status_sensor_context(
        sensor_name="retrain_tag_sensor", dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=result.get_run_success_event(),
        resources={"dvc": DvcResource(), "storage": PipelineStorage(data_dir=str(root / "data"))},
    )


def test_successful_retrain_run_commits_dvc_lock_and_tags_the_quarter(dvc_repo, tiny_catalog_dir):
    instance = DagsterInstance.ephemeral()
    before = _git(dvc_repo, "rev-parse", "HEAD")
    result = _materialize(dvc_repo, tiny_catalog_dir, instance=instance, tags={RETRAIN_TAG: "2027Q1"})
    assert result.success
    (dvc_repo / "notes.txt").write_text("someone else's work in progress\n")
    _git(dvc_repo, "add", "notes.txt")  # staged, and must stay out of the retrain commit

    assert retrain_tag_sensor(_sensor_context(instance, result, dvc_repo)) is None
    head = _git(dvc_repo, "rev-parse", "HEAD")
    assert head != before
    assert _git(dvc_repo, "rev-parse", "retrain-2027Q1^{commit}") == head
    assert _git(dvc_repo, "show", "--name-only", "--format=", "HEAD").splitlines() == ["dvc.lock"]
    assert _git(dvc_repo, "show", "retrain-2027Q1:dvc.lock") == (dvc_repo / "dvc.lock").read_text().strip()
    assert result.dagster_run.run_id in _git(dvc_repo, "tag", "-n1", "retrain-2027Q1")
    assert _git(dvc_repo, "diff", "--cached", "--name-only") == "notes.txt"

    # the same run seen again (a sensor restart): nothing new
    assert retrain_tag_sensor(_sensor_context(instance, result, dvc_repo)) is None
    assert _git(dvc_repo, "rev-parse", "HEAD") == head

    # another retrain in the same quarter with other data: a clear error, the tag is not moved
    again = _materialize(dvc_repo, tiny_catalog_dir, seed=9, instance=instance, tags={RETRAIN_TAG: "2027Q1"})
    with pytest.raises(Exception, match="retrain-2027Q1 already exists"):
        retrain_tag_sensor(_sensor_context(instance, again, dvc_repo))
    assert _git(dvc_repo, "rev-parse", "retrain-2027Q1^{commit}") == head


def test_runs_without_the_retrain_tag_are_not_tagged(dvc_repo, tiny_catalog_dir):
    instance = DagsterInstance.ephemeral()
    result = _materialize(dvc_repo, tiny_catalog_dir, assets=[seed_templates], instance=instance)
    skipped = retrain_tag_sensor(_sensor_context(instance, result, dvc_repo))
    assert isinstance(skipped, SkipReason) and "no quarterly retrain" in skipped.skip_message
    assert _git(dvc_repo, "tag") == ""
    with pytest.raises(versioning.VersioningError, match="not of the form"):
        versioning.tag_retrain(dvc_repo, "2027-Q1", "bad")
