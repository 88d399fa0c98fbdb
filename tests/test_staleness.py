"""Issue 15 item 5: exports and runs made on older decisions are marked stale (with what changed and how many
images differ), and the pages say once what changed the decisions when the person did not change them there."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from conftest import app_page, import_and_scan
from fer_core import datasets, decisions, export, recipe, review, staleness


@pytest.fixture
def sub(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "sub")
    return decisions.load_inputs("sub")


def _current(name: str, rec=None) -> staleness.Current:
    inp = decisions.load_inputs(name)
    rec = rec or recipe.default_recipe(inp.signals)
    dec = decisions.run(inp, rec, decisions.overrides_for(name))
    return staleness.Current.of(datasets.load(name), inp.signals, dec, rec)


def _reject_kept_train(name: str, inp, n: int, author: str = "someone-else") -> list[str]:
    dec = decisions.run(inp, recipe.default_recipe(inp.signals), decisions.overrides_for(name))
    kept = inp.signals["id"][dec["keep"].to_numpy() & (inp.signals["split"] == "train").to_numpy()]
    ids = list(kept.iloc[:n])
    review.store_for(datasets.load(name)).set(ids, "reject", author=author)
    return ids


def test_an_export_goes_stale_when_overrides_change_and_says_how_many_images_differ(sub):
    rec = recipe.default_recipe(sub.signals)
    m = export.export("sub", rec, "sub-clean").manifest
    assert m["decisions"]["fingerprint"] == staleness.fingerprint(sub.signals, decisions.run(sub, rec, None))
    assert staleness.is_stale(m, _current("sub")) == (False, "made on the current decisions")
    _reject_kept_train("sub", sub, 5)
    stale, why = staleness.is_stale(m, _current("sub"))
    assert stale is True
    assert why == "stale: made before overrides (0 → 5) changed the decisions (5 images differ)"
    # another recipe than the export's: said as such, with the true count of differing images
    other = recipe.default_recipe(sub.signals)
    other = other.with_filter("sharpness", min=float(np.percentile(sub.signals["sharpness"], 30)))
    cur = _current("sub", other)
    old = decisions.run(sub, rec, None)["keep"].to_numpy()
    new = decisions.run(sub, other, decisions.overrides_for("sub"))["keep"].to_numpy()
    stale, why = staleness.is_stale(m, cur)
    assert stale and f"({int((old != new).sum()):,} images differ)" in why
    assert "a recipe change and overrides (0 → 5)" in why


def test_a_run_records_its_decisions_and_raw_runs_are_never_stale(sub):
    from fer_core.train import data

    rec = recipe.default_recipe(sub.signals)
    td = data.assemble("sub", "recipe", rec)
    cfg = {"dataset": "sub", "source": td.source}
    raw = {"dataset": "sub", "source": data.assemble("sub", "raw").source}
    assert staleness.is_stale(cfg, _current("sub"))[0] is False
    _reject_kept_train("sub", sub, 3)
    assert staleness.is_stale(cfg, _current("sub")) == (
        True, "stale: made before overrides (0 → 3) changed the decisions (3 images differ)")
    assert staleness.is_stale(raw, _current("sub")) == (False, "raw data: curation does not change it")


def test_items_made_before_records_existed_are_cannot_tell_not_fresh(sub):
    rec = recipe.default_recipe(sub.signals)
    m = export.export("sub", rec, "old").manifest
    legacy = {k: v for k, v in m.items() if k != "decisions"}
    assert staleness.is_stale(legacy, _current("sub"))[0] is None
    _reject_kept_train("sub", sub, 2)   # the kept total now differs: that much can be told
    assert staleness.is_stale(legacy, _current("sub"))[0] is True
    run_cfg = {"dataset": "sub", "source": {"kind": "recipe", "catalog_hash": m["source"]["catalog_hash"]}}
    assert staleness.is_stale(run_cfg, _current("sub")) == (
        None, "cannot tell: made before the app recorded the decisions it used")


def _hide_face_signals(ws) -> list:
    home = ws / "datasets" / "faces" / "signals"
    moved = []
    for fam in ("faces", "embeddings"):
        shutil.move(home / fam, home.parent / f"hidden-{fam}")
        moved.append((home.parent / f"hidden-{fam}", home / fam))
    return moved



def test_face_signals_arriving_are_announced_once_and_mark_the_export_stale(faces_ws):
    """The reported path: export with the default recipe, face signals finish, the default recipe now uses them."""
    ws, _ = faces_ws
    moved = _hide_face_signals(ws)          # as before "Compute face signals" finished
    before = decisions.load_inputs("faces")
    assert "face_score" not in before.signals
    rec0 = recipe.default_recipe(before.signals, name="default")
    export.export("faces", rec0, "faces-clean")
    at = app_page("pages/5_Export.py")
    assert not [i for i in at.info if "Since you last looked" in i.value]
    exp = next(e for e in at.expander if e.label.startswith("faces-clean"))
    assert exp.label.endswith("✓ current")
    for src, dst in moved:                  # the face-signal job finishes (its results appear atomically)
        shutil.move(src, dst)
    at.run()
    assert not at.exception, at.exception
    after = decisions.load_inputs("faces")
    rec1 = recipe.default_recipe(after.signals, name="default")
    old = decisions.run(before, rec0, None)["keep"].to_numpy()
    new = decisions.run(after, rec1, None)["keep"].to_numpy()
    assert (~new).sum() != (~old).sum()
    notes = [i.value for i in at.info if "Since you last looked" in i.value]
    assert len(notes) == 1 and (f"Since you last looked: face signals were added; rejected {(~old).sum():,} → "
                                f"{(~new).sum():,}.") in notes[0], notes
    exp = next(e for e in at.expander if e.label.startswith("faces-clean"))
    assert exp.label.endswith("⚠️ stale")
    warn = [w.value for w in exp.warning]
    assert warn and (f"Stale: made before face signals (the default recipe now uses them) changed the decisions "
                     f"({int((old != new).sum()):,} images differ)") in warn[0], warn
    at.run()                                 # said once
    assert not [i for i in at.info if "Since you last looked" in i.value]


def test_overrides_from_another_session_are_announced_but_ones_own_are_not(sub):
    at = app_page("pages/5_Export.py")
    rejected = int(next(m.value for m in at.sidebar.metric if m.label == "Rejected").replace(",", ""))
    _reject_kept_train("sub", sub, 4, author="another-tab")
    at.run()
    notes = [i.value for i in at.info if "Since you last looked" in i.value]
    assert notes == [f"Since you last looked: 4 overrides were written in another tab or session; rejected "
                     f"{rejected:,} → {rejected + 4:,}. Exports and runs made before are marked stale on the Export "
                     "and Train pages."]
    # this session's own override (the inspector's buttons write with the session's author): no notice
    at.session_state["_author"] = "me"
    _reject_kept_train("sub", sub, 1, author="me")
    at.run()
    assert not [i for i in at.info if "Since you last looked" in i.value]
    # a new session (a reload) starts from what the last one saw: nothing changed since
    at2 = app_page("pages/5_Export.py")
    assert not [i for i in at2.info if "Since you last looked" in i.value]
    assert json.loads((datasets.load("sub").home / "seen.json").read_text())["rejected"] == rejected + 5
    # a change made while no page was open is announced by the next session (the reload after a long job)
    _reject_kept_train("sub", sub, 2, author="cli")
    at3 = app_page("pages/5_Export.py")
    assert [i.value for i in at3.info if "Since you last looked" in i.value] == [
        f"Since you last looked: 2 overrides were written in another tab or session; rejected {rejected + 5:,} → "
        f"{rejected + 7:,}. Exports and runs made before are marked stale on the Export and Train pages."]


def test_train_page_marks_runs_made_on_older_decisions_stale(sub):
    from fer_core.train import runner

    rec = recipe.default_recipe(sub.signals, name="default")
    runner.train("sub", "recipe", rec, preset="smoke", seed=0, epochs=1, n_boot=50, run_id="r-recipe")
    at = app_page("pages/7_Train.py")
    table = next(d.value for d in at.dataframe if "decisions" in d.value)
    assert list(table["decisions"]) == ["current"]
    _reject_kept_train("sub", sub, 3)
    at.run()
    table = next(d.value for d in at.dataframe if "decisions" in d.value)
    assert list(table["decisions"]) == ["⚠️ stale: made before overrides (0 → 3) changed the decisions (3 images differ)"]
    assert any("Trained on older decisions" in w.value for w in at.warning)
