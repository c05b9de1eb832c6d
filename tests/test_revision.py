import subprocess

import pytest

from tppeft import revision
from tppeft.reporting.report import _revision_text


def _git(root, *args):
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A git checkout in the src layout, which source_revision reads instead of the real one."""
    (tmp_path / "src" / "tppeft").mkdir(parents=True)
    (tmp_path / "src" / "tppeft" / "a.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "first")
    monkeypatch.setattr(revision, "CHECKOUT", tmp_path)
    revision.source_revision.cache_clear()
    yield tmp_path
    revision.source_revision.cache_clear()


def test_the_revision_is_the_checkouts_commit_and_says_when_its_source_changed(checkout):
    head = _git(checkout, "rev-parse", "HEAD")
    assert revision.source_revision() == head and len(head) == 40
    (checkout / "notes.txt").write_text("untracked, outside the source\n")
    (checkout / "src" / "tppeft" / "new.py").write_text("untracked\n")
    revision.source_revision.cache_clear()
    assert revision.source_revision() == head  # untracked files are not the source the commit names
    (checkout / "src" / "tppeft" / "a.py").write_text("x = 2\n")
    revision.source_revision.cache_clear()
    assert revision.source_revision() == head + revision.DIRTY


def test_no_revision_outside_a_git_checkout(tmp_path, monkeypatch):
    (tmp_path / "src" / "tppeft").mkdir(parents=True)
    monkeypatch.setattr(revision, "CHECKOUT", tmp_path)
    revision.source_revision.cache_clear()
    try:
        assert revision.source_revision() is None
    finally:
        revision.source_revision.cache_clear()


def test_the_report_names_the_commit_or_each_of_several():
    one = "a" * 40
    assert _revision_text({"tppeft_version": "0.1.0", "revision": [{"commit": one, "runs": ["tpp:0"]}]}) == \
        f" Code: tppeft 0.1.0, commit `{'a' * 12}`."
    two = {"tppeft_version": "0.1.0", "revision": [{"commit": one, "runs": ["tpp:0", "tpp:1"]},
                                                   {"commit": "b" * 40 + revision.DIRTY, "runs": ["tpp:2"]}]}
    assert _revision_text(two) == (f" Code: tppeft 0.1.0; the runs were made from 2 revisions of the code "
                                   f"(`{'a' * 12}`: 2 run(s); `{'b' * 12}` with uncommitted changes: 1 run(s)).")
    assert _revision_text({"tppeft_version": "0.1.0"}) == " Code: tppeft 0.1.0."  # older summaries, installed copies


def test_a_run_resumed_from_a_later_commit_compares_equal_to_one_made_at_once(tmp_path):
    """The commit is provenance, not a result: a resume check ignores it as it ignores timings."""
    from tppeft.io import append_jsonl
    from tppeft.rundir import comparable_outputs

    record = {"arm": "tpp", "seed": 0, "test": {"auc": 0.8}, "seconds": 3.0, "pretext": {"seconds": 1.0}}
    for name, commit in (("once", "abc"), ("resumed", "def+changes")):
        (tmp_path / name).mkdir()
        append_jsonl(tmp_path / name / "results.jsonl", {**record, "revision": commit})
    assert comparable_outputs(tmp_path / "once") == comparable_outputs(tmp_path / "resumed")
    append_jsonl(tmp_path / "resumed" / "results.jsonl", {**record, "seed": 1})
    assert comparable_outputs(tmp_path / "once") != comparable_outputs(tmp_path / "resumed")
