"""External, read-only test sets (the peer benchmark): read from a configured folder, never copied, never trained on."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from .jsonl import json_lines


def load_peer_cases(folder: Path | str) -> pl.DataFrame | None:
    """Rows (file, id, task, expected_agent, difficulty) of every *.jsonl in `folder`; None when there is none."""
    path = Path(folder)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else []
    rows = []
    for f in files:
        for lineno, obj, error in json_lines(f):
            if error or not isinstance(obj, dict):
                raise ValueError(f"{f}:{lineno}: {error or 'expected a JSON object'}")
            rows.append({"file": f.name, "id": str(obj.get("id", f"{f.name}:{lineno}")), "task": str(obj.get("task", "")),
                         "expected_agent": str(obj.get("expected_agent", "")),
                         "difficulty": str(obj.get("difficulty", ""))})
    return pl.DataFrame(rows) if rows else None
