"""AppTest on a real FER2013 subset: Quality, Duplicates, Review and Export pages."""

from __future__ import annotations

import pytest

from conftest import app_page, import_and_scan
from fer_core import datasets, decisions, recipe, review
from waiting import wait_job


@pytest.fixture
def subset(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "sub")
    return decisions.load_inputs("sub")



def _metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_quality_page_offers_a_scan_when_signals_are_missing(tmp_path, fer_sample):
    import_and_scan(tmp_path, dict(list(fer_sample.items())[:30]), "noscan", scan=False)
    at = app_page("pages/2_Quality.py")
    assert any("not computed yet" in w.value for w in at.warning)
    next(b for b in at.button if b.label == "Scan signals").click()
    at.run()
    from ui.common import job_manager
    jm = job_manager()
    job = jm.list("scan", "noscan")[0]
    assert wait_job(jm, job.id).state == "done", jm.log(job.id)
    at.run()
    assert not at.exception and any(m.label == "Rejected by this filter" for m in at.metric)


def test_slider_changes_counts_to_what_decide_computes(subset):
    at = app_page("pages/2_Quality.py")
    assert at.selectbox(key="q_signal").value == "sharpness"
    slider = at.select_slider[0]
    default = recipe.default_recipe(subset.signals)
    assert float(slider.value) == pytest.approx(default.filters["sharpness"].min, rel=1e-3)
    before = int(_metric(at, "Rejected by this filter").replace(",", ""))
    options = [float(o.replace(",", "")) for o in slider.options]
    new = options[len(options) // 5]
    slider.set_value(new)
    at.run()
    assert not at.exception
    after = int(_metric(at, "Rejected by this filter").replace(",", ""))
    default = default.with_filter("sharpness", min=new)
    dec = decisions.run(subset, default)
    expected = int(recipe.has_reason(dec["reasons"], "sharpness").sum())
    assert after == expected != before
    assert _metric(at, "Kept") == f"{int(dec['keep'].sum()):,}"
    # the recipe now has unsaved changes, visibly
    assert any("unsaved changes" in m.value for m in at.sidebar.markdown)
    # turning the filter off removes its rejections
    at.toggle[0].set_value(False)
    at.run()
    assert _metric(at, "Rejected by this filter") == "0"
    # the recipe (and its effect) survives a page switch
    at.switch_page("pages/3_Duplicates.py")
    at.run()
    assert not at.exception
    default = default.with_filter("sharpness", enabled=False)
    assert _metric(at, "Kept") == f"{int(decisions.run(subset, default)['keep'].sum()):,}"


def test_override_flips_a_decision_and_persists(subset):
    sig = subset.signals
    dec = decisions.run(subset, recipe.default_recipe(sig))
    target = sig.loc[dec["keep"] & (sig["split"] == "train"), "id"].iloc[0]
    at = app_page("pages/2_Quality.py")
    kept_before = _metric(at, "Kept")
    at.session_state["inspect"] = target
    at.run()
    assert any("KEPT" in m.value for m in at.markdown)
    at.button(key=f"ins-rej-{target}").click()
    at.run()
    assert any("REJECTED" in m.value for m in at.markdown)
    assert int(_metric(at, "Kept").replace(",", "")) == int(kept_before.replace(",", "")) - 1
    assert review.store_for(datasets.load("sub")).get(target) == ("reject", None)
    # a new session (reload) sees it: the Review page lists it
    at2 = app_page("pages/4_Review.py")
    at2.session_state["rv_tab"] = "Overrides"                 # lazy tabs: open it
    at2.run()
    assert any(c.value.startswith("**1 manual override** so far") for c in at2.caption)
    table = at2.dataframe[0].value
    assert target in set(table["image id"])
    # and it can be reversed from the inspector
    at.button(key=f"ins-keep-{target}").click()
    at.run()
    assert _metric(at, "Kept") == kept_before


def test_recipe_save_and_load_round_trip(subset):
    at = app_page("pages/2_Quality.py")
    slider = at.select_slider[0]
    new = float(slider.options[len(slider.options) // 4].replace(",", ""))
    slider.set_value(new)
    at.run()
    at.sidebar.text_input(key="rsave-sub").input("strict")
    at.sidebar.button(key="rsave-btn-sub").click()
    at.run()
    path = datasets.load("sub").home / "recipes" / "strict.yaml"
    saved = recipe.Recipe.load(path)
    assert saved.filters["sharpness"].min == pytest.approx(new) and saved.name == "strict"
    assert any("`strict`" in m.value for m in at.sidebar.markdown)
    assert not any("unsaved" in m.value for m in at.sidebar.markdown)
    # reset to defaults, then load the saved recipe back
    at.sidebar.button(key="rreset-sub").click()
    at.run()
    assert float(at.select_slider[0].value) != pytest.approx(new)
    at.sidebar.selectbox(key="rload-sub").set_value("strict")
    at.sidebar.button(key="rload-btn-sub").click()
    at.run()
    assert float(at.select_slider[0].value) == pytest.approx(new)
    assert at.session_state["recipe_state"]["sub"]["recipe"].to_dict() == saved.to_dict()
    # the same file works with the CLI's decide
    dec = decisions.run(subset, saved)
    assert int(dec["keep"].sum()) == int(_metric(at, "Kept").replace(",", ""))


def test_duplicates_page_renders_groups_and_leakage(subset):
    at = app_page("pages/3_Duplicates.py")
    dec = decisions.run(subset, recipe.default_recipe(subset.signals))
    assert _metric(at, "Duplicate groups") == f"{dec.loc[dec['group'] >= 0, 'group'].nunique():,}"
    assert _metric(at, "Val/test images with a copy in train") == f"{int(dec['eval_leaked'].sum()):,}"
    at.select_slider[0].set_value(0)       # near duplicates at 0 bits: only identical hashes pair up
    at.run()
    assert not at.exception
    rec0 = recipe.default_recipe(subset.signals)
    rec0 = rec0.with_duplicates(near_threshold=0)
    dec0 = decisions.run(subset, rec0)
    assert _metric(at, "Duplicate groups") == f"{dec0.loc[dec0['group'] >= 0, 'group'].nunique():,}"
    assert _metric(at, "Extra copies dropped") == f"{int(recipe.has_reason(dec0['reasons'], 'duplicate').sum()):,}"


def test_duplicates_slider_shows_a_loaded_recipes_value_between_the_marks(subset):
    """A recipe with 5 Hamming bits (the slider's marks are even) shows 5, not a silently different mark."""
    rec = recipe.default_recipe(subset.signals)
    rec = rec.replace(name="odd").with_duplicates(near_threshold=5)
    rec.save(decisions.recipes_dir("sub") / "odd.yaml")
    at = app_page("pages/3_Duplicates.py")
    at.sidebar.selectbox(key="rload-sub").set_value("odd")
    at.sidebar.button(key="rload-btn-sub").click()
    at.run()
    assert not at.exception, at.exception
    sl = next(s for s in at.select_slider if s.label.startswith("Near-duplicate threshold"))
    assert int(sl.value) == 5
    dec = decisions.run(subset, rec)
    assert _metric(at, "Duplicate groups") == f"{dec.loc[dec['group'] >= 0, 'group'].nunique():,}"
    sl.set_value(2)   # and it still moves
    at.run()
    rec = rec.with_duplicates(near_threshold=2)
    dec = decisions.run(subset, rec)
    assert _metric(at, "Duplicate groups") == f"{dec.loc[dec['group'] >= 0, 'group'].nunique():,}"


def test_review_queue_bulk_reject_and_undo(subset):
    at = app_page("pages/4_Review.py")
    boxes = at.main.checkbox   # (the sidebar has the recipe's own checkboxes)
    assert 0 < len(boxes) <= 100
    at.button(key="rv_all").click()
    at.run()
    n = len(at.main.checkbox)
    assert all(c.value for c in at.main.checkbox)
    at.button(key="rv_reject").click()
    at.run()
    rs = review.store_for(datasets.load("sub"))
    assert rs.count() == n
    at.button(key="rv_undo").click()
    at.run()
    assert rs.count() == 0


def test_export_page_exports_in_background(subset):
    at = app_page("pages/5_Export.py")
    assert any("exported untouched" in i.value for i in at.info)
    at.checkbox(key="ex_clahe").check()
    at.run()
    assert not at.exception
    at.button(key="ex_go").click()
    at.run()
    from ui.common import job_manager
    jm = job_manager()
    job = jm.list("export", "sub")[0]
    st = wait_job(jm, job.id)
    assert st.state == "done", jm.log(job.id)
    at.run()
    assert any(e.label.startswith("sub-clean") for e in at.expander)
    assert any(b.label.startswith("Download sub-clean.zip") for b in at.get("download_button"))


# ---- every filter's slider, one- and two-sided (issue 15 item 1) ---------------------------------------------

def _num(s: str) -> float:
    return float(str(s).replace(",", ""))


def _slider_value(v):
    return tuple(_num(x) for x in v) if isinstance(v, (tuple, list)) else _num(v)


def _check_counts(at, inputs, model, col):
    """The numbers the page shows are what fer_core's decide computes for the model recipe."""
    assert not at.exception, at.exception
    dec = decisions.run(inputs, model)
    s = recipe.summarize(inputs.signals, dec)
    assert _metric(at, "Kept") == f"{s['kept']:,}"
    assert _metric(at, "Rejected") == f"{s['rejected']:,}"
    assert _metric(at, "Rejected by this filter") == f"{int(recipe.has_reason(dec['reasons'], col).sum()):,}"
    if any(m.label == "Sent to review by it" for m in at.metric):
        flagged = recipe.has_reason(dec["review"], col) & dec["in_scope"].to_numpy()
        assert _metric(at, "Sent to review by it") == f"{int(flagged.sum()):,}"
    return dec


def _move(at, label_start: str, frac: float, frac_hi: float | None = None):
    """Move the slider whose label starts with ``label_start`` to the option at ``frac`` (two-sided: to
    ``frac``..``frac_hi``); returns the new value as floats."""
    sl = next(s for s in at.select_slider if s.label.startswith(label_start))
    opts = [_num(o) for o in sl.options]
    pick = lambda q: opts[min(len(opts) - 1, int(q * (len(opts) - 1)))]  # noqa: E731
    new = (pick(frac), pick(frac_hi)) if frac_hi is not None else pick(frac)
    assert new != _slider_value(sl.value), "the test must actually move the slider"
    sl.set_value(new)
    at.run()
    assert not at.exception, at.exception
    sl = next(s for s in at.select_slider if s.label.startswith(label_start))
    assert _slider_value(sl.value) == (tuple(new) if isinstance(new, tuple) else new)
    return new


def test_every_filter_slider_moves_and_counts_match_decide(faces_ws):
    """For every signal the Quality page offers (one-sided, two-sided, review-first): select it, switch it on,
    move its slider(s), and the page's counts equal decide's for that threshold. The two-sided brightness
    slider used to crash with "'float' object is not subscriptable" (issue 15)."""
    from fer_core.signals.base import COLUMN_META

    inputs = decisions.load_inputs("faces")
    model = recipe.default_recipe(inputs.signals)
    cols = [c for c in recipe.filter_columns() if c in inputs.signals and c in model.filters]
    at = app_page("pages/2_Quality.py")
    assert len(at.selectbox(key="q_signal").options) == len(cols)
    assert {"brightness", "sharpness", "face_score", "class_outlier"} <= set(cols)
    assert any(COLUMN_META[c].direction == "both" for c in cols)
    visited = set()
    for col in cols + ["brightness"]:  # back to the two-sided one after every other kind
        meta = COLUMN_META[col]
        revisit = col in visited
        visited.add(col)
        at.selectbox(key="q_signal").select(col)
        at.run()
        _check_counts(at, inputs, model, col)
        on = next(t for t in at.toggle if t.label == "Filter on")
        if not on.value:
            on.set_value(True)
            at.run()
            model = model.with_filter(col, enabled=True)
            _check_counts(at, inputs, model, col)
        if all(len(s.options) == 1 for s in at.select_slider):
            assert inputs.signals[col].nunique() == 1  # a constant signal (FER2013's aspect ratio): nothing to move
            continue
        if meta.direction == "both":
            # the revisit moves both thumbs to other places than the first visit did
            lo, hi = _move(at, "Keep ", 0.2, 0.8) if revisit else _move(at, "Keep ", 0.1, 0.9)
            model = model.with_filter(col, min=lo, max=hi)
        else:
            side = "min" if meta.direction == "low" else "max"
            q = 0.3 if side == "min" else 0.7
            if any(s.label.startswith("Send to review") for s in at.select_slider):
                model = model.with_filter(col, **{"review_" + side: _move(at, "Send to review", q)})
                _check_counts(at, inputs, model, col)
                box = next(c for c in at.checkbox if c.label.startswith("Also reject automatically"))
                box.set_value(not box.value)
                at.run()
                model = model.with_filter(col, **{side: getattr(model.filters[col], "review_" + side) if box.value
                                                  else None})
                _check_counts(at, inputs, model, col)
                if not box.value:
                    continue
                q = 0.2 if side == "min" else 0.8
                model = model.with_filter(col, **{side: _move(at, "Reject ", q)})
            else:
                model = model.with_filter(col, **{side: _move(at, "Reject ", q)})
        dec = _check_counts(at, inputs, model, col)
        if not (meta.review_only or meta.review_k is not None):
            assert recipe.has_reason(dec["reasons"], col).any(), f"moving {col} should reject something"


def test_a_failed_override_save_stays_on_screen_after_the_rerun(subset, monkeypatch):
    """A full disk while saving: the click reruns the page, and the error must survive that rerun (not flash
    and vanish, and an undo that failed must not say "Nothing to undo")."""
    from fer_core.errors import DiskFull

    def full(self, *a, **kw):
        raise DiskFull("The disk is full: the override was not saved.", "Free some space and try again.")

    monkeypatch.setattr(review.ReviewStore, "set", full)
    monkeypatch.setattr(review.ReviewStore, "undo", full)
    at = app_page("pages/4_Review.py")
    at.button(key="rv_all").click()
    at.run()
    at.button(key="rv_reject").click()
    at.run()
    assert not at.exception
    assert any("override was not saved" in e.value for e in at.error), [e.value for e in at.error]
    assert review.store_for(datasets.load("sub")).overrides().empty
    at.button(key="rv_undo").click()
    at.run()
    assert any("override was not saved" in e.value for e in at.error)
    assert not any("Nothing to undo" in str(getattr(x, "value", "")) for x in list(at.info) + list(at.success)
                   + list(at.caption) + list(at.markdown))
