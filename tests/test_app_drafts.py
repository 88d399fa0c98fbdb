"""AppTest on a real FER2013 subset: unsaved recipe changes survive a new tab (auto-saved draft), the recipe
that Export and Train use is named, and the recipe-level per-class cap changes the counts as decide does."""

from __future__ import annotations

import pytest

from conftest import app_page, import_and_scan
from fer_core import decisions, drafts, recipe


@pytest.fixture
def subset(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "sub")
    return decisions.load_inputs("sub")



def _kept(at) -> int:
    return int(next(m.value for m in at.metric if m.label == "Kept").replace(",", ""))


def _restored(at) -> list[str]:
    return [i.value for i in at.sidebar.info if "Restored your unsaved changes" in i.value]


def test_unsaved_slider_change_is_restored_in_a_new_tab(subset):
    at = app_page("pages/2_Quality.py")
    assert drafts.read("sub") is None and not _restored(at)
    slider = at.select_slider[0]
    new = float(slider.options[len(slider.options) // 5].replace(",", ""))
    slider.set_value(new)
    at.run()
    assert not at.exception
    d = drafts.read("sub")                                         # auto-saved on the server at the change
    assert d is not None and d.recipe.filters["sharpness"].min == pytest.approx(new) and d.base is None
    kept = _kept(at)
    # a new tab (or a reload): the change is back, and says so
    tab = app_page("pages/2_Quality.py")
    msg = _restored(tab)
    assert len(msg) == 1 and "from " in msg[0]
    assert float(tab.select_slider[0].value) == pytest.approx(new) and _kept(tab) == kept
    assert any("unsaved changes" in m.value for m in tab.sidebar.markdown)
    assert any("Export and Train use: `default (data-derived)` (unsaved draft" in c.value for c in tab.sidebar.caption)
    # the Export page names the recipe it will export with
    tab.switch_page("pages/5_Export.py")
    tab.run()
    assert not tab.exception
    assert any("Export and Train use: `default (data-derived)` (unsaved draft" in c.value for c in tab.main.caption)
    tab.switch_page("pages/2_Quality.py")
    tab.run()
    # discarding goes back to the default and removes the draft: a third tab starts clean
    tab.sidebar.button(key="rdraft-discard-sub").click()
    tab.run()
    default = recipe.default_recipe(subset.signals)
    assert float(tab.select_slider[0].value) == pytest.approx(default.filters["sharpness"].min, rel=1e-3)
    assert drafts.read("sub") is None and not _restored(tab)
    assert _kept(tab) == int(decisions.run(subset, default)["keep"].sum())
    third = app_page("pages/2_Quality.py")
    assert not _restored(third) and float(third.select_slider[0].value) == pytest.approx(
        default.filters["sharpness"].min, rel=1e-3)


def test_saving_clears_the_draft_and_hidden_recipes_are_not_listed(subset):
    rdir = decisions.recipes_dir("sub")
    tmp_export = rdir / ".export-0123456789abcdef.yaml"             # what the Export page writes for its job
    recipe.default_recipe(subset.signals).save(tmp_export)
    at = app_page("pages/2_Quality.py")
    slider = at.select_slider[0]
    slider.set_value(float(slider.options[len(slider.options) // 4].replace(",", "")))
    at.run()
    assert drafts.read("sub") is not None
    at.sidebar.text_input(key="rsave-sub").input("strict")
    at.sidebar.button(key="rsave-btn-sub").click()
    at.run()
    assert drafts.read("sub") is None and drafts.list_recipes("sub") == ["strict"] and tmp_export.exists()
    assert at.sidebar.selectbox(key="rload-sub").options == ["strict"]   # not .export-… nor .draft
    assert any("Export and Train use: `strict` (saved)" in c.value for c in at.sidebar.caption)
    assert not _restored(app_page("pages/2_Quality.py"))


def test_recipe_class_cap_in_the_sidebar_changes_counts_as_decide(subset):
    at = app_page("pages/2_Quality.py")
    rec = recipe.default_recipe(subset.signals)
    kept = _kept(at)
    assert kept == int(decisions.run(subset, rec)["keep"].sum())
    next(c for c in at.sidebar.checkbox if c.label == "Cap what the recipe removes per class").check()
    at.run()
    next(n for n in at.sidebar.number_input if n.label == "At most this share of any class (%)").set_value(1.0)
    at.run()
    assert not at.exception
    rec = rec.replace(class_cap=0.01)
    dec = decisions.run(subset, rec)
    assert _kept(at) == int(dec["keep"].sum()) > kept
    assert at.session_state["recipe_state"]["sub"]["recipe"].class_cap == 0.01
    spared = int(dec["class_capped"].sum())
    assert any(f"{spared:,} rejections spared by the recipe's per-class cap" in c.value for c in at.sidebar.caption)
    # the cap is part of the auto-saved draft, so a new tab has it too
    assert drafts.read("sub").recipe.class_cap == 0.01
    tab = app_page("pages/2_Quality.py")
    assert _kept(tab) == int(dec["keep"].sum())
