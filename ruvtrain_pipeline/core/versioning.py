"""DVC and git plumbing behind the DVC resource: find the stage that outputs an asset folder, record it
(`dvc commit -f <stage>`, `dvc push <stage>`) one process at a time, read its hash from dvc.lock, and tag a
quarterly retrain in git. No Dagster import; every DVC call is the real `dvc` command line in a subprocess."""

from __future__ import annotations

import fcntl
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

# What DVC prints when another DVC process holds the repo lock (dvc/lock.py) or an output's read/write lock
# (dvc/rwlock.py); both are worth a retry, anything else is a real failure.
DVC_LOCK_MESSAGES = ("Unable to acquire lock", "is busy, it is being blocked by")
# Environment DVC sets for a stage command it runs (dvc/stage/run.py: prepare_kwargs); checked with dvc 3.67.
DVC_STAGE_ENV = "DVC_STAGE"
DVC_ROOT_ENV = "DVC_ROOT"
PROCESS_LOCK_FILE = "ruvtrain-dvc.lock"  # under .dvc/tmp, which DVC already git-ignores
QUARTER_RE = re.compile(r"^\d{4}Q[1-4]$")
RETRAIN_TAG_PREFIX = "retrain-"
_USERINFO_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


class VersioningError(RuntimeError):
    """DVC or git refused to record an output or a tag; the message says which command and why."""


def redact(text: str) -> str:
    """Drop credentials written into URLs (`s3://KEY:SECRET@host/...`) from a message before it is logged."""
    return _USERINFO_RE.sub(r"\g<scheme>***@", text)


def find_dvc_root(path: Path | str) -> Path | None:
    """The innermost folder holding `.dvc/` at or above `path` (which need not exist yet), or None."""
    here = Path(path).resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def _out_paths(stage: dict[str, Any]) -> list[str]:
    return [o if isinstance(o, str) else next(iter(o)) for o in stage.get("outs") or []]


def stage_for_output(root: Path, out_dir: Path | str) -> str | None:
    """Name of the dvc.yaml stage at `root` whose `outs` lists `out_dir`, or None (no dvc.yaml, or no such stage)."""
    dvc_yaml = root / "dvc.yaml"
    if not dvc_yaml.is_file():
        return None
    try:
        rel = Path(out_dir).resolve().relative_to(root).as_posix()
    except ValueError:
        return None
    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages") or {}
    for name, stage in stages.items():
        if isinstance(stage, dict) and rel in {p.rstrip("/") for p in _out_paths(stage)}:
            return str(name)
    return None


def missing_deps(root: Path, stage: str) -> list[str]:
    """The `deps` of `stage` in root/dvc.yaml that do not exist (DVC refuses to commit a stage with one), in order."""
    stages = (yaml.safe_load((root / "dvc.yaml").read_text(encoding="utf-8")) or {}).get("stages") or {}
    deps = [d if isinstance(d, str) else next(iter(d)) for d in (stages.get(stage) or {}).get("deps") or []]
    return [d for d in deps if not (root / d).exists()]


def out_entry(lock_text: str, out_rel: str, stage: str | None = None) -> dict[str, Any] | None:
    """The record ({path, hash, md5, size, nfiles}) of output `out_rel` in the text of a dvc.lock, under `stage` or
    under any stage; None when there is none."""
    stages = (yaml.safe_load(lock_text) or {}).get("stages") or {}
    for name, entry in stages.items():
        if stage is not None and name != stage:
            continue
        for out in (entry or {}).get("outs") or []:
            if str(out.get("path", "")).rstrip("/") == out_rel:
                return dict(out)
    return None


def lock_entry(root: Path, stage: str, out_dir: Path | str) -> dict[str, Any] | None:
    """The dvc.lock record of `out_dir` under `stage` ({path, hash, md5, size, nfiles}), or None."""
    lock_file = root / "dvc.lock"
    if not lock_file.is_file():
        return None
    rel = Path(out_dir).resolve().relative_to(root).as_posix()
    return out_entry(lock_file.read_text(encoding="utf-8"), rel, stage)


def running_under_dvc_repro(root: Path) -> str | None:
    """The stage `dvc repro` (or `dvc exp run`) is running right now in `root`, when this process is its command.
    DVC holds its locks for the whole command and records the outputs itself afterwards."""
    stage = os.environ.get(DVC_STAGE_ENV)
    dvc_root = os.environ.get(DVC_ROOT_ENV)
    if not stage or not dvc_root:
        return None
    return stage if Path(dvc_root).resolve() == root.resolve() else None


@contextmanager
def process_lock(root: Path, timeout_s: float) -> Iterator[None]:
    """One process at a time runs DVC/git in `root` (an flock on .dvc/tmp/ruvtrain-dvc.lock): runs in separate
    processes, or instances without the Dagster pool, would otherwise collide on DVC's own lock."""
    lock_dir = root / ".dvc" / "tmp"
    lock_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with (lock_dir / PROCESS_LOCK_FILE).open("a") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise VersioningError(f"waited {timeout_s:.0f}s for {lock_dir / PROCESS_LOCK_FILE}: another "
                                          "process keeps running DVC in this repository") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _tail(text: str, lines: int = 6) -> str:
    return redact("\n".join(line for line in text.strip().splitlines()[-lines:]))


def run_dvc(root: Path, args: Sequence[str], lock_timeout_s: float = 300.0,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """`dvc <args>` in `root` with this interpreter's DVC; retried while another DVC process holds DVC's lock
    (up to `lock_timeout_s`), an error with DVC's own message otherwise (when `check`)."""
    cmd = [sys.executable, "-m", "dvc", *args]
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    deadline = time.monotonic() + lock_timeout_s
    delay = 0.5
    while True:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
        if proc.returncode == 0 or not any(m in out for m in DVC_LOCK_MESSAGES) or time.monotonic() > deadline:
            break
        log.info("dvc %s: DVC's lock is held by another process, retrying in %.1fs", " ".join(args), delay)
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
    if check and proc.returncode != 0:
        raise VersioningError(f"`dvc {' '.join(args)}` in {root} failed (exit {proc.returncode}):\n{_tail(out)}")
    return proc


def default_remote(root: Path) -> str | None:
    """Name of the default DVC remote (system, global, repository or local config), or None when none is set.
    Read with DVC's own config loader, in-process: a `dvc remote default` subprocess costs a second per asset."""
    from dvc.config import Config

    return Config(dvc_dir=str(root / ".dvc"))["core"].get("remote") or None


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise VersioningError(f"`git {' '.join(args)}` in {root} failed (exit {proc.returncode}):\n"
                              f"{_tail(proc.stdout + proc.stderr)}")
    return proc


@dataclass(frozen=True)
class GitState:
    commit: str  # short sha of HEAD
    dirty: bool  # tracked files (dvc.lock aside, which versioning itself rewrites) differ from HEAD


def git_state(root: Path) -> GitState | None:
    """HEAD of the git repository holding `root`, or None (no git, not a repository, no commit yet)."""
    try:
        head = _git(root, "rev-parse", "--short", "HEAD", check=False)
    except FileNotFoundError:
        return None
    if head.returncode != 0:
        return None
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)dvc.lock")
    return GitState(commit=head.stdout.strip(), dirty=bool(status.stdout.strip()))


def _identity_args(root: Path) -> list[str]:
    """A committer identity for machines (CI, the daemon's host) that have none configured."""
    have = _git(root, "config", "user.email", check=False).stdout.strip()
    return [] if have else ["-c", "user.name=ruvtrain pipeline", "-c", "user.email=ruvtrain-pipeline@localhost"]


@dataclass(frozen=True)
class RetrainTag:
    tag: str
    commit: str  # full sha the tag points at
    committed_lock: bool  # whether dvc.lock had to be committed first
    created: bool  # False when the tag already pointed at this commit (a repeated call)


def tag_retrain(root: Path, quarter: str, message: str, lock_timeout_s: float = 300.0) -> RetrainTag:
    """Commit dvc.lock (only that file) when it changed, then tag HEAD `retrain-<quarter>` (annotated). A tag that
    already records this very dvc.lock makes it a no-op; a tag recording another one is an error, never moved."""
    if not QUARTER_RE.match(quarter):
        raise VersioningError(f"retrain quarter {quarter!r} is not of the form 2027Q1")
    tag = f"{RETRAIN_TAG_PREFIX}{quarter}"
    if not (root / "dvc.lock").is_file():
        raise VersioningError(f"{root / 'dvc.lock'} does not exist: nothing of the retrain was recorded by DVC")
    with process_lock(root, lock_timeout_s):
        has_head = _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0
        tracked = _git(root, "ls-files", "--error-unmatch", "--", "dvc.lock", check=False).returncode == 0
        lock_changed = not (has_head and tracked) or _git(
            root, "diff", "--quiet", "HEAD", "--", "dvc.lock", check=False).returncode == 1
        existing = _git(root, "rev-parse", "--verify", "-q", f"refs/tags/{tag}^{{commit}}", check=False)
        if existing.returncode == 0:
            at = existing.stdout.strip()
            tagged_lock = _git(root, "rev-parse", "-q", "--verify", f"{at}:dvc.lock", check=False).stdout.strip()
            if tagged_lock == _git(root, "hash-object", "--", "dvc.lock").stdout.strip():
                return RetrainTag(tag, at, committed_lock=False, created=False)  # this very dvc.lock, tagged before
            raise VersioningError(
                f"git tag {tag} already exists at {at[:12]} with another dvc.lock than this retrain's: a second "
                f"retrain in {quarter}? Inspect `git show {tag}`; delete the tag (`git tag -d {tag}`) to re-tag, or "
                "keep it.")
        if lock_changed:
            _git(root, "add", "--", "dvc.lock")
            _git(root, *_identity_args(root), "commit", "-q", "-m", message, "--", "dvc.lock")
        _git(root, *_identity_args(root), "tag", "-a", tag, "-m", message)
        at = _git(root, "rev-parse", f"refs/tags/{tag}^{{commit}}").stdout.strip()
        return RetrainTag(tag, at, committed_lock=lock_changed, created=True)
