"""One JSON-lines reader for every JSONL the project reads: yields (line number, object or None, error or None)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def json_lines(path: Path | str) -> Iterator[tuple[int, Any, str | None]]:
    """Blank lines are skipped; a line that is not JSON yields (lineno, None, reason) so callers raise or skip."""
    with Path(path).open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line), None
            except json.JSONDecodeError as exc:
                yield lineno, None, f"not valid JSON ({exc.msg})"
