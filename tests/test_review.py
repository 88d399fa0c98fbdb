"""Overrides in SQLite: every write kept under concurrency, undo by author, bulk actions, validation."""

from __future__ import annotations

import multiprocessing as mp

import pytest

from fer_core.errors import InvalidInput
from fer_core.review import ReviewStore


def _writer(path, prefix, n):
    rs = ReviewStore(path)
    for i in range(n):
        rs.set(f"{prefix}-{i:03d}", "reject" if i % 2 else "keep", author=prefix)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "review.sqlite"
    ReviewStore(path)
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, p, 150)) for p in ("alice", "bob", "carol")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rs = ReviewStore(path)  # a fresh object, as after a server restart
    o = rs.overrides()
    assert len(o) == 450 and len(rs.history(1000)) == 450
    assert (o.set_index("image_id").loc["bob-001", "action"]) == "reject"


def test_undo_restores_previous_state_per_author(tmp_path):
    rs = ReviewStore(tmp_path / "r.sqlite")
    rs.set("a", "reject", author="s1")
    rs.set("a", "keep", author="s2")
    rs.set(["b", "c", "d"], "reject", author="s1")
    assert rs.undo(author="s1") == ["b", "c", "d"]          # the whole bulk action
    assert rs.get("b") is None and rs.get("a") == ("keep", None)
    assert rs.undo(author="s1") == ["a"]                      # s1's reject of a is undone...
    assert rs.get("a") == ("keep", None)                      # ...but s2's later keep still stands
    assert rs.undo(author="s2") == ["a"] and rs.get("a") is None
    assert rs.undo() == []


def test_relabel_validation(tmp_path):
    rs = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(InvalidInput):
        rs.set("a", "relabel", label="grumpy")
    with pytest.raises(InvalidInput):
        rs.set("a", "destroy")
    rs.set("a", "relabel", label="fear")
    assert rs.overrides().iloc[0][["action", "label"]].tolist() == ["relabel", "fear"]
