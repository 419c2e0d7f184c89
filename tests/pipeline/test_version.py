"""pipeline.version: the code version that goes into trial keys and the git commit read without git."""

import shutil
from pathlib import Path

from pipeline import version

ROOT = Path(__file__).resolve().parents[2]


def test_code_version_is_the_package_version_plus_a_digest_computed_once():
    v = version.code_version()
    assert v.startswith(version.package_version() + "+") and len(v.split("+")[1]) == 12
    assert version.code_version() is v  # cached: computed once per process


def test_digest_follows_the_training_code_and_nothing_else(tmp_path):
    for rel in ("kernels", "pipeline"):
        shutil.copytree(ROOT / rel, tmp_path / rel, ignore=shutil.ignore_patterns("__pycache__"))
    before = version.code_digest(tmp_path)
    assert before == version.code_digest(ROOT)
    (tmp_path / "pipeline" / "plots.py").write_text("# reporting code does not change results\n")
    assert version.code_digest(tmp_path) == before
    with open(tmp_path / "kernels" / "optim.py", "a") as handle:
        handle.write("\n# changed\n")
    assert version.code_digest(tmp_path) != before


def _git(tmp_path, head, refs=None, packed=None):
    git = tmp_path / ".git"
    git.mkdir()
    (git / "HEAD").write_text(head + "\n")
    for ref, sha in (refs or {}).items():
        (git / ref).parent.mkdir(parents=True, exist_ok=True)
        (git / ref).write_text(sha + "\n")
    if packed:
        (git / "packed-refs").write_text("# pack-refs with: peeled\n" + "".join(f"{s} {r}\n" for r, s in packed.items()))
    return git


def test_git_commit_is_read_from_the_checkout_without_git(tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert version.git_commit(tmp_path) is None  # not a checkout: absent, no error
    _git(tmp_path, "ref: refs/heads/main", refs={"refs/heads/main": sha})
    assert version.git_commit(tmp_path) == sha


def test_git_commit_detached_packed_and_worktree(tmp_path):
    sha = "89abcdef0123456789abcdef0123456789abcdef"
    (tmp_path / "a").mkdir()
    _git(tmp_path / "a", sha)
    assert version.git_commit(tmp_path / "a") == sha
    (tmp_path / "b").mkdir()
    _git(tmp_path / "b", "ref: refs/heads/x", packed={"refs/heads/x": sha})
    assert version.git_commit(tmp_path / "b") == sha
    # a worktree: .git is a file naming its gitdir, whose refs live in the common dir
    gitdir = tmp_path / "b" / ".git" / "worktrees" / "w"
    gitdir.mkdir(parents=True)
    (gitdir / "HEAD").write_text("ref: refs/heads/x\n")
    (gitdir / "commondir").write_text("../..\n")
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / ".git").write_text(f"gitdir: {gitdir}\n")
    assert version.git_commit(tmp_path / "w") == sha


def test_source_tags_name_commit_source_and_version():
    tags = version.source_tags()
    assert tags["sweepnet.version"] == version.code_version() and tags["mlflow.source.name"]
    assert tags.get("mlflow.source.git.commit") == version.git_commit(version.ROOT)
