"""Rollback of a DVC-tracked output folder (the production router) to the version a git revision of dvc.lock
recorded: `git show REV:dvc.lock` gives the folder's DVC hash at that revision, `dvc get` brings those bytes back
from the DVC cache (or the remote) and they replace the folder atomically. No Dagster import; the production_router
asset records the rollback as a materialization."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from .versioning import out_entry


class RollbackError(RuntimeError):
    """The revision, its dvc.lock entry or the bytes cannot be found; the message says which and where."""


@dataclass(frozen=True)
class LockedVersion:
    """One version of an output folder as a dvc.lock revision recorded it."""

    rev: str  # what was asked for (a commit, a tag, HEAD~2, ...)
    commit: str  # the full commit it resolves to
    md5: str  # DVC's directory hash (`<md5>.dir`)
    size: int
    nfiles: int
    subject: str  # the commit's subject line

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _git(root: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RollbackError(f"`git {' '.join(args)}` in {root} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout


def locked_version(root: Path, rev: str, out_rel: str) -> LockedVersion | None:
    """The entry of `out_rel` in dvc.lock at git revision `rev`, or None when that dvc.lock has none."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").strip()
    try:
        text = _git(root, "show", f"{commit}:dvc.lock")
    except RollbackError:
        return None  # no dvc.lock in that commit
    entry = out_entry(text, out_rel)
    if entry is None or not entry.get("md5"):
        return None
    subject = _git(root, "log", "-1", "--format=%s", commit).strip()
    return LockedVersion(rev, commit, str(entry["md5"]), int(entry.get("size", 0)), int(entry.get("nfiles", 1)),
                         subject)


def workspace_md5(root: Path, out_rel: str) -> str | None:
    """The hash the working tree's dvc.lock records for `out_rel` (the version in place now), or None."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return None
    entry = out_entry(lock.read_text(encoding="utf-8"), out_rel)
    return str(entry["md5"]) if entry and entry.get("md5") else None


def history(root: Path, out_rel: str, limit: int = 200) -> list[LockedVersion]:
    """Versions of `out_rel` in the git history of dvc.lock, newest first, one per change of its hash."""
    out: list[LockedVersion] = []
    for commit in _git(root, "log", f"-{limit}", "--format=%H", "--", "dvc.lock").split():
        version = locked_version(root, commit, out_rel)
        if version is not None and (not out or out[-1].md5 != version.md5):
            out.append(version)
    return out


def resolve_target(root: Path, out_rel: str, to: str | None) -> LockedVersion:
    """The version to restore: the one at revision `to`, or else the newest committed version whose hash differs
    from the one in place now."""
    if to:
        try:
            version = locked_version(root, to, out_rel)
        except RollbackError as err:
            raise RollbackError(f"{to!r} is not a git revision of {root}: {err}") from None
        if version is None:
            raise RollbackError(f"dvc.lock at {to!r} has no entry for {out_rel} (was the production router "
                                "committed to DVC at that revision?)")
        return version
    current = workspace_md5(root, out_rel)
    for version in history(root, out_rel):
        if version.md5 != current:
            return version
    raise RollbackError(f"no earlier version of {out_rel} in the git history of {root / 'dvc.lock'} "
                        f"(current {current or 'none'})")


def dvc_executable() -> str:
    """The `dvc` next to this Python (the project's venv), else the one on PATH."""
    here = Path(sys.executable).with_name("dvc")
    return str(here) if here.exists() else "dvc"


def restore(root: Path, version: LockedVersion, out_dir: Path, timeout_s: float = 600) -> None:
    """Put the bytes of `version` in `out_dir`: `dvc get` of the folder at that commit (DVC reads its cache, else
    the remote, and checks the hashes) into a temp folder beside `out_dir`, which then replaces `out_dir`."""
    out_dir = Path(out_dir)
    rel = out_dir.resolve().relative_to(root.resolve()).as_posix()
    tmp_parent = out_dir.parent / f".{out_dir.name}.rollback-{uuid.uuid4().hex[:8]}"
    tmp_parent.mkdir(parents=True)
    try:
        fetched = tmp_parent / out_dir.name
        proc = subprocess.run([dvc_executable(), "get", str(root), rel, "--rev", version.commit, "-o", str(fetched)],
                              cwd=root, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0 or not fetched.is_dir():
            raise RollbackError(f"`dvc get {rel} --rev {version.commit[:12]}` failed (is {version.md5} in the DVC "
                                f"cache or the remote?): {(proc.stderr or proc.stdout).strip()[-800:]}")
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(fetched, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
