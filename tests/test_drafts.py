"""Auto-saved draft recipes (fer_core.drafts): write / read / clear, atomic, never listed as a saved recipe."""

from __future__ import annotations

import errno
import time

import pytest

from conftest import import_and_scan
from fer_core import decisions, drafts, recipe
from fer_core.errors import DiskFull, InvalidInput


@pytest.fixture
def ds(tmp_path, fer_sample):
    return import_and_scan(tmp_path, dict(list(fer_sample.items())[:12]), "d", scan=False)


def _rec(cut: float) -> recipe.Recipe:
    return recipe.Recipe(name="mine", filters={"sharpness": recipe.Filter(min=cut)}, class_cap=0.25)


def test_draft_write_read_clear_and_not_listed(ds):
    assert drafts.read("d") is None and drafts.list_recipes("d") == []
    t0 = time.time()
    path = drafts.write("d", _rec(120.5), base="strict", label="strict")
    assert path == ds.home / "recipes" / ".draft.yaml" and path.exists()
    d = drafts.read("d")
    assert d.recipe.to_dict() == _rec(120.5).to_dict() and d.recipe.fingerprint() == _rec(120.5).fingerprint()
    assert (d.base, d.label) == ("strict", "strict") and t0 - 1 <= d.updated <= time.time() + 1
    # a later change replaces it
    drafts.write("d", _rec(99.0), base=None, label="default (data-derived)")
    d = drafts.read("d")
    assert d.recipe.filters["sharpness"].min == 99.0 and d.base is None
    # saved recipes are listed; the draft and an export's temporary recipe are not
    rdir = decisions.recipes_dir("d")
    _rec(1.0).save(rdir / "strict.yaml")
    _rec(2.0).save(rdir / f".export-{_rec(2.0).fingerprint()}.yaml")
    assert drafts.list_recipes("d") == ["strict"]
    assert drafts.clear("d") is True and drafts.read("d") is None and not path.exists()
    assert drafts.clear("d") is False
    assert drafts.list_recipes("d") == ["strict"]                      # clearing touches nothing else


def test_a_failed_draft_write_keeps_the_previous_draft(ds, monkeypatch):
    """The write is atomic: when the disk is full the old draft stays whole and no temp file is left."""
    drafts.write("d", _rec(120.5), base=None, label="default (data-derived)")
    before = drafts.draft_path("d").read_bytes()
    import fer_core.progress as progress

    def full(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m, pytest.raises(DiskFull, match="could not be auto-saved.*No space left"):
        m.setattr(progress.os, "replace", full)
        drafts.write("d", _rec(300.0), base=None, label="default (data-derived)")
    assert drafts.draft_path("d").read_bytes() == before
    assert drafts.read("d").recipe.filters["sharpness"].min == 120.5
    assert [p.name for p in (ds.home / "recipes").iterdir()] == [".draft.yaml"]


def test_an_unreadable_draft_is_moved_aside_and_reported(ds):
    path = drafts.draft_path("d")
    path.write_text("format: fer-recipe-draft/1\nrecipe: {filters: {sharpness: {mni: 3}}}\nupdated: 1\n")
    with pytest.raises(InvalidInput, match=r"could not be read .*filters\.sharpness\.mni.*kept as .*draft-unreadable"):
        drafts.read("d")
    kept = list((ds.home / "recipes").glob(".draft-unreadable-*.yaml"))
    assert len(kept) == 1 and "mni" in kept[0].read_text()            # nothing the person made is deleted
    assert drafts.read("d") is None and drafts.list_recipes("d") == []
