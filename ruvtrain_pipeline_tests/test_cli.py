"""The `ruvtrain` command's dataset helpers."""

from __future__ import annotations

import json

from ruvtrain_pipeline.cli import main


def test_catalog_command_validates(capsys):
    assert main(["catalog"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["templates"] >= 520 and len(out["by_agent_type"]) == 13


def test_catalog_command_reports_bad_file(tiny_catalog_dir, capsys):
    path = tiny_catalog_dir / "templates" / "planner.yaml"
    path.write_text(path.read_text().replace("quality: 0.92", "quality: 1.5", 1))
    assert main(["catalog", "--dir", str(tiny_catalog_dir)]) == 1
    err = capsys.readouterr().err
    assert "planner.yaml" in err and "template 'planner-000'" in err and "quality 1.5 out of range" in err


def test_generate_command_writes_splits(tiny_catalog_dir, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["generate", "--out", str(out), "--examples-per-agent", "12", "--catalog", str(tiny_catalog_dir)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rows"] == sum(summary["by_split"].values()) > 12 * 13
    assert (out / "train.jsonl").exists() and (out / "data" / "test.parquet").exists()
    weighted = tmp_path / "weighted"  # cover_templates is the default; --no-cover-templates draws weighted
    assert main(["generate", "--out", str(weighted), "--examples-per-agent", "12", "--no-cover-templates",
                 "--catalog", str(tiny_catalog_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] > 12 * 13
    assert (weighted / "train.jsonl").read_bytes() != (out / "train.jsonl").read_bytes()
