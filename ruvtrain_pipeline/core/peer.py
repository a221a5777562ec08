"""External, read-only test sets (the peer benchmark): read from a configured folder, never copied, never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl


def load_peer_cases(folder: Path | str) -> pl.DataFrame | None:
    """Rows (file, task, expected_agent, difficulty) of every *.jsonl in `folder`; None when there is none."""
    path = Path(folder)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else []
    rows = []
    for f in files:
        for lineno, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{f}:{lineno}: not valid JSON ({exc.msg})") from exc
            rows.append({"file": f.name, "task": str(obj.get("task", "")),
                         "expected_agent": str(obj.get("expected_agent", "")),
                         "difficulty": str(obj.get("difficulty", ""))})
    return pl.DataFrame(rows) if rows else None
