"""AppTest: review queues driven by the face signals, and the Embedding map page."""

from __future__ import annotations


from conftest import app_page
from fer_core import datasets, review, store



def test_review_queues_for_faces_outliers_and_conflicts(faces_ws):
    ws, info = faces_ws
    at = app_page("pages/4_Review.py", timeout=180)
    options = at.selectbox(key="rv_reason").options
    assert "Not a face (face score)" in options and "Conflicting labels (copies disagree)" in options
    assert "Outlier in its class" in options
    at.selectbox(key="rv_reason").select("face_score")
    at.selectbox(key="rv_status").select("all flagged")
    at.run()
    helps = [c.help for c in at.checkbox]
    assert sum("_text" in h or "_blank" in h or "_texture" in h or "_small_face" in h for h in helps) == 4
    at.selectbox(key="rv_reason").select("conflict")
    at.run()
    helps = [c.help for c in at.checkbox]
    assert info["recrop"] in helps  # the relabelled training copy of a test image
    # confirm the queue: reject the conflicting copy by hand, then undo
    at.checkbox(key=f"rv_sel_{next(c.key[7:] for c in at.checkbox if c.help == info['recrop'])}").check()
    at.run()
    at.button(key="rv_reject").click()
    at.run()
    rs = review.store_for(datasets.load("faces"))
    assert rs.count() == 1
    at.button(key="rv_undo").click()
    at.run()
    assert rs.count() == 0


def test_embedding_map_selection_and_bulk_reject(faces_ws):
    at = app_page("pages/6_Embedding_map.py", timeout=180)
    at.radio(key="emap_method").set_value("pca")
    at.run()
    assert not at.exception
    sig = store.load_signals("faces")
    chosen = sig[sig["split"] == "train"]["id"].iloc[:7].tolist()
    at.session_state["emap_sel"] = chosen       # what a lasso selection stores
    at.run()
    assert any("7 images selected" in m.value for m in at.markdown)
    at.button(key="emap_reject").click()
    at.run()
    o = review.store_for(datasets.load("faces")).overrides()
    assert sorted(o["image_id"]) == sorted(chosen) and set(o["action"]) == {"reject"}
    at.selectbox(key="emap_color").select("face_score")
    at.run()
    assert not at.exception


def test_quality_page_shows_face_signals_with_detector_names(faces_ws):
    at = app_page("pages/2_Quality.py", timeout=180)
    opts = at.selectbox(key="q_signal").options
    assert "Face score (YuNet)" in opts and "Outlier in its class" in opts
    at.selectbox(key="q_signal").select("face_score")
    at.run()
    assert not at.exception
    labels = [s.label for s in at.select_slider]
    assert any(l.startswith("Send to review below") for l in labels)
    assert any(m.label == "Sent to review by it" for m in at.metric)
