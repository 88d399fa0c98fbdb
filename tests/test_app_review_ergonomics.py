"""Review ergonomics (issue 15 item 10), AppTest on real FER2013 images: larger tiles whose captions carry the
whole text, page buttons, relabel buttons 1-7, the keyboard map each page declares, thumbnails in the
overrides table, and a confirmation naming the count before a bulk change of 100 images or more (Review
queue, overrides table, embedding map)."""

from __future__ import annotations

import base64
import html
import json
import re

import cv2
import numpy as np
import pytest

from conftest import app_page, decode_gray, encode, import_and_scan
from fer_core import datasets, decisions, embedmap, recipe, review
from ui.review_tools import BULK_CONFIRM_AT


def planted_copies(tmp_path, fer_sample, name: str, copies: int = 150):
    """The session's real FER2013 sample plus a pixel-identical PNG copy of ``copies`` training images: more
    than one page (100) of extra copies flagged for review."""
    files = dict(fer_sample)
    train = [n for n in fer_sample if n.startswith("train/")][:copies]
    for n in train:
        files[n.replace(".jpg", "_copy.png")] = encode(decode_gray(fer_sample[n]))
    import_and_scan(tmp_path, files, name)
    return decisions.load_inputs(name)


@pytest.fixture
def rv(tmp_path, fer_sample):
    return planted_copies(tmp_path, fer_sample, "rv")



def _shown(at) -> list[str]:
    return [c.key.removeprefix("rv_sel_") for c in at.main.checkbox if c.key and c.key.startswith("rv_sel_")]


def _keys(at) -> dict:
    """The keyboard map the page declared this run (key → CSS selector of the button it presses)."""
    out = {}
    for h in at.main.get("html"):
        m = re.search(r'class="fer-keys" data-keys="([^"]*)"', h.proto.body)
        if m:
            out.update(json.loads(html.unescape(m.group(1))))
    return out


def test_queue_tiles_pages_relabel_and_keys(rv):
    sig = rv.signals
    dec = decisions.run(rv, recipe.default_recipe(sig))
    flagged = np.flatnonzero(dec["in_scope"].to_numpy() & ((dec["flags"].to_numpy() | dec["review"].to_numpy()) != 0))
    assert len(flagged) > 100
    at = app_page("pages/4_Review.py")
    ids = _shown(at)
    assert len(ids) == 100
    # each tile: the image, its label as the tick box's label, and the whole reason text under it
    by_id = sig.set_index("id")
    reasons = dict(zip(sig["id"], recipe.reasons_text(dec["flags"].to_numpy() | dec["review"].to_numpy(), ", ")))
    captions = [c.value for c in at.main.caption]
    for box in at.main.checkbox:
        if box.key.startswith("rv_sel_"):
            iid = box.key.removeprefix("rv_sel_")
            assert box.label == f"**{by_id.loc[iid, 'label']}**"
    for iid in ids:
        assert any(c.endswith(" · " + reasons[iid]) for c in captions), reasons[iid]
    assert not any("…" in c for c in captions)
    # page buttons (← / →)
    at.button(key="rv_next").click()
    at.run()
    assert at.number_input(key="rv_page").value == 2
    page2 = _shown(at)
    assert page2 and not set(page2) & set(ids) and len(page2) == len(flagged) - 100
    assert at.button(key="rv_next").disabled
    at.button(key="rv_prev").click()
    at.run()
    assert _shown(at) == ids
    # relabel the ticked images with the numbered buttons
    fear = next(b for b in at.button if b.key == "rv_to_fear")
    assert fear.label == "3 fear" and fear.disabled
    at.checkbox(key=f"rv_sel_{ids[0]}").check()
    at.checkbox(key=f"rv_sel_{ids[1]}").check()
    at.run()
    at.button(key="rv_to_fear").click()
    at.run()
    rs = review.store_for(datasets.load("rv"))
    assert rs.get(ids[0]) == ("relabel", "fear") and rs.get(ids[1]) == ("relabel", "fear") and rs.count() == 2
    assert not {ids[0], ids[1]} & set(_shown(at))                # decided: they leave the "to review" queue
    assert f"rv_sel_{ids[0]}" not in at.session_state              # and their ticks are cleared
    # the keyboard map: ←/→, a, x, k, r, u and 1-7 press those buttons
    keys = _keys(at)
    assert keys["ArrowRight"] == ".st-key-rv_next button" and keys["ArrowLeft"] == ".st-key-rv_prev button"
    assert keys["k"] == ".st-key-rv_keep button" and keys["r"] == ".st-key-rv_reject button"
    assert keys["a"] == ".st-key-rv_all button" and keys["u"] == ".st-key-rv_undo button"
    assert [keys[str(n)] for n in range(1, 8)] == [f".st-key-rv_to_{lab} button" for lab in
                                                  ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")]
    at.button(key="rv_undo").click()
    at.run()
    assert rs.count() == 0


def test_bulk_reject_of_a_full_page_asks_first_naming_the_count(rv):
    at = app_page("pages/4_Review.py")
    ids = _shown(at)
    rs = review.store_for(datasets.load("rv"))
    at.button(key="rv_all").click()
    at.run()
    assert all(at.checkbox(key=f"rv_sel_{i}").value for i in ids)
    at.button(key="rv_reject").click()
    at.run()
    assert rs.count() == 0                                        # nothing applied yet: a question
    yes = at.button(key="bulk_yes")
    assert yes.label == f"Reject {len(ids)} images" and len(ids) >= BULK_CONFIRM_AT
    assert any(f"**{len(ids)} images**" in m.value for m in at.markdown)
    at.button(key="bulk_no").click()                              # cancel: nothing changes, the ticks stay
    at.run()
    assert rs.count() == 0 and not [b for b in at.button if b.key == "bulk_yes"]
    assert all(at.checkbox(key=f"rv_sel_{i}").value for i in ids)
    at.button(key="rv_reject").click()
    at.run()
    at.button(key="bulk_yes").click()
    at.run()
    assert not at.exception, at.exception
    assert rs.count() == len(ids) and all(rs.get(i) == ("reject", None) for i in ids)
    assert not [b for b in at.button if b.key == "bulk_yes"]
    # below the threshold nothing is asked
    at.button(key="rv_undo").click()
    at.run()
    at.checkbox(key=f"rv_sel_{ids[0]}").check()
    at.run()
    at.button(key="rv_keep").click()
    at.run()
    assert rs.get(ids[0]) == ("keep", None) and rs.count() == 1


def test_overrides_table_shows_each_image(rv):
    sig = rv.signals
    rs = review.store_for(datasets.load("rv"))
    chosen = sig["id"].iloc[[3, 50, 120]].tolist()
    rs.set(chosen, "reject", author="test")
    at = app_page("pages/4_Review.py")
    at.session_state["rv_tab"] = "Overrides"     # lazy tabs: only the open one is drawn
    at.run()
    table = at.dataframe[0].value
    assert list(table.columns[:2]) == ["image", "time"] and set(table["image id"]) == set(chosen)
    ds = datasets.load("rv")
    for uri, iid in zip(table["image"], table["image id"]):
        assert uri.startswith("data:image/jpeg;base64,")
        thumb = cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), cv2.IMREAD_GRAYSCALE)
        assert thumb.shape == (48, 48)
        orig = cv2.imread(str(ds.image_path(sig.set_index("id").loc[iid, "path"])), cv2.IMREAD_GRAYSCALE)
        assert np.abs(thumb.astype(int) - orig.astype(int)).mean() < 6       # that image, not another one


def test_label_issues_first_image_takes_the_keys(tmp_path, fer_sample):
    from fer_core.train import labels

    import_and_scan(tmp_path, fer_sample, "li")
    labels.compute("li", labels.LabelsConfig(folds=3, epochs=1, sources=("cnn",)))
    at = app_page("pages/4_Review.py")
    at.session_state["rv_tab"] = "Label issues"
    at.run()
    assert not at.exception, at.exception
    rows = [b.key.removeprefix("li_keep_") for b in at.button if b.key and b.key.startswith("li_keep_")]
    assert rows
    first = rows[0]
    keys = _keys(at)
    assert keys["k"] == f".st-key-li_keep_{first} button" and keys["r"] == f".st-key-li_drop_{first} button"
    assert keys["s"] == f".st-key-li_rel_{first} button" and keys["3"] == f".st-key-li_to_fear_{first} button"
    at.button(key=f"li_to_fear_{first}").click()
    at.run()
    assert review.store_for(datasets.load("li")).get(first) == ("relabel", "fear")


def test_map_reject_all_asks_first(faces_ws):
    ws, _ = faces_ws
    embedmap.compute_map("faces", "pca")
    rs = review.store_for(datasets.load("faces"))
    before = rs.count()
    at = app_page("pages/6_Embedding_map.py")
    at.radio(key="emap_method").set_value("pca")
    at.run()
    ids = decisions.load_inputs("faces").signals["id"].tolist()
    assert len(ids) >= BULK_CONFIRM_AT
    at.session_state["emap_sel"] = ids
    at.run()
    btn = at.button(key="emap_reject")
    assert btn.label == f"Reject all {len(ids):,}"
    btn.click()
    at.run()
    assert rs.count() == before
    assert at.button(key="bulk_yes").label == f"Reject {len(ids):,} images"
    # a question left unanswered is not carried to another page (nor applied)
    at.switch_page("pages/4_Review.py")
    at.run()
    assert not at.exception and not [b for b in at.button if b.key == "bulk_yes"] and rs.count() == before
    at.switch_page("pages/6_Embedding_map.py")
    at.run()
    assert not [b for b in at.button if b.key == "bulk_yes"]
    at.button(key="emap_reject").click()
    at.run()
    at.button(key="bulk_yes").click()
    at.run()
    assert not at.exception, at.exception
    assert all(rs.get(i) == ("reject", None) for i in ids)
    # a handful is applied at once
    at.session_state["emap_sel"] = ids[:5]
    at.run()
    at.button(key="emap_keep").click()
    at.run()
    assert all(rs.get(i) == ("keep", None) for i in ids[:5])


def test_ticks_and_the_page_survive_a_look_at_another_tab(rv):
    """Lazy tabs drop the state of widgets that are not drawn: ticks, the page number and the queue filters must
    still be there after the person looked at the Overrides tab."""
    at = app_page("pages/4_Review.py")
    boxes = [c for c in at.main.checkbox if c.key and c.key.startswith("rv_sel_")]
    boxes[1].check()
    at.run()
    for tab in ("Overrides", "Queue"):
        at.session_state["rv_tab"] = tab
        at.run()
        assert not at.exception, at.exception
    assert at.checkbox(key=boxes[1].key).value and not at.checkbox(key=boxes[0].key).value
    assert "(1)" in at.button(key="rv_reject").label          # the ticked image is still selected
