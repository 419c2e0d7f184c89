"""The code version of a result: the package version plus a digest of the code that computes it.

Trial keys include it, so a rerun after the kernels or the training code changed recomputes instead of
reusing results of older code (``reuse_older`` opts back in). The git commit is read from the checkout's
files (no ``git`` needed at runtime); outside a checkout it is absent.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

PACKAGE = "sweepnet"
ROOT = Path(__file__).resolve().parents[1]
#: What decides a trial's numbers, relative to the source root (directories: every ``.py`` below; paths
#: that do not exist are skipped, so a module that becomes a package keeps counting).
TRAINING_CODE = ("kernels", "pipeline/model.py", "pipeline/fitting.py", "pipeline/fitting", "pipeline/encoding.py",
                 "pipeline/config.py", "pipeline/metrics.py", "pipeline/train.py", "pipeline/datasets")
TAG_VERSION = "sweepnet.version"


def package_version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def code_digest(root: str | Path = ROOT, paths=TRAINING_CODE) -> str:
    """12 hex chars of sha256 over the relative path and bytes of every training-code file under ``root``."""
    root = Path(root)
    digest = hashlib.sha256()
    for rel in paths:
        path = root / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else ([path] if path.is_file() else [])
        for file in files:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    """``"<package version>+<code digest>"``, computed once per process (~40 small files read)."""
    return f"{package_version()}+{code_digest(ROOT)}"


@functools.lru_cache(maxsize=None)
def _commit_of(root: Path) -> str | None:
    return git_commit(root)


def git_commit(root: str | Path = ROOT) -> str | None:
    """The commit checked out at ``root`` from ``.git`` (a directory, or a worktree's ``gitdir:`` file),
    loose refs or ``packed-refs``; ``None`` when ``root`` is not a checkout or the files are unreadable."""
    try:
        git = Path(root) / ".git"
        if git.is_file():
            gitdir = Path(git.read_text().split("gitdir:", 1)[1].strip())
            gitdir = gitdir if gitdir.is_absolute() else (Path(root) / gitdir)
        elif git.is_dir():
            gitdir = git
        else:
            return None
        head = (gitdir / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head or None
        ref = head[4:].strip()
        common = gitdir / (gitdir / "commondir").read_text().strip() if (gitdir / "commondir").is_file() else gitdir
        for folder in (gitdir, common):
            if (folder / ref).is_file():
                return (folder / ref).read_text().strip() or None
        packed = common / "packed-refs"
        for line in (packed.read_text().splitlines() if packed.is_file() else []):
            sha, _, name = line.partition(" ")
            if name.strip() == ref:
                return sha
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    return None


def source_tags() -> dict[str, str]:
    """MLflow tags of a parent or child run: code version, source name and (when known) git commit."""
    tags = {TAG_VERSION: code_version(), "mlflow.source.name": PACKAGE}
    commit = _commit_of(ROOT)
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags
