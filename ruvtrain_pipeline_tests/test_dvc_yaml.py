"""dvc.yaml mirrors the asset graph: one stage per asset, upstream data folders as deps, data/<asset> as outs."""

from __future__ import annotations

import yaml

from ruvtrain_pipeline.definitions import defs

from .conftest import REPO_ROOT


def test_dvc_stages_match_asset_graph():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    graph = defs.resolve_asset_graph()
    assets = {k.to_user_string(): k for k in graph.get_all_asset_keys()}
    assert set(stages) == set(assets)
    for name, key in assets.items():
        stage = stages[name]
        assert stage["cmd"] == f"dagster asset materialize -m ruvtrain_pipeline.definitions --select {name}"
        outs = [o if isinstance(o, str) else next(iter(o)) for o in stage["outs"]]
        assert f"data/{name}" in outs
        parents = {p.to_user_string() for p in graph.get(key).parent_keys}
        data_deps = {d.removeprefix("data/") for d in stage["deps"] if d.startswith("data/")}
        # direct parents are deps; a stage may also read the catalog snapshot of seed_templates
        assert parents <= data_deps, name
        assert data_deps <= set(assets), name
        for dep in stage["deps"]:
            if not dep.startswith("data/"):
                assert (REPO_ROOT / dep).exists(), dep
        # an always-changed stage would keep `dvc status` from ever reporting the pipeline up to date
        assert not stage.get("always_changed"), name


def test_stages_that_read_their_own_previous_output_keep_it_under_dvc_repro():
    """`dvc repro` deletes a stage's outputs before running it unless they are persistent: the evaluation report
    (regression vs the previous report) and the production router (the champion) read theirs."""
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    for name in ("evaluation_report", "production_router"):
        outs = {next(iter(o)): o[next(iter(o))] for o in stages[name]["outs"] if isinstance(o, dict)}
        assert outs.get(f"data/{name}", {}).get("persist") is True, name
