"""AppTest: the home page and the Datasets page (credentials form, import job, summary)."""

from __future__ import annotations

import stat
import time

from streamlit.testing.v1 import AppTest

from conftest import ROOT, zip_tree
from fer_core import datasets
from fer_core.sources import kaggle


def _page(path="pages/1_Datasets.py"):
    at = AppTest.from_file(str(ROOT / path), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_page_says_where_to_start():
    at = _page("app.py")
    text = " ".join(m.value for m in at.markdown)
    assert "Curate facial-expression-recognition datasets" in text
    assert any("Datasets page" in i.value for i in at.info)


def test_datasets_page_renders_without_data():
    at = _page()
    assert at.title[0].value.endswith("Datasets")
    assert any("No Kaggle credentials" in w.value for w in at.warning)
    labels = [b.label for b in at.button]
    assert "Download and import" in labels and "Import" in labels


def test_credentials_form_session_only_then_remember():
    at = _page()
    at.text_input(key="kg_user").input("alice")
    at.text_input(key="kg_key").input("alice-secret")
    at.button[0].click()  # "Use these credentials" (form submit)
    at.run()
    creds = at.session_state["kaggle_creds"]
    assert (creds.username, creds.key, creds.source) == ("alice", "alice-secret", "typed")
    assert not kaggle.kaggle_json_path().exists()  # not written without "remember"
    assert any("Using credentials of **alice**" in s.value and "typed here" in s.value for s in at.success)
    page_text = " ".join(str(e.value) for e in at.markdown) + " ".join(s.value for s in at.success)
    assert "alice-secret" not in page_text
    # a second browser session does not see them
    at2 = _page()
    assert "kaggle_creds" not in at2.session_state
    # remember: writes kaggle.json with 0600
    at.text_input(key="kg_user").input("alice")
    at.text_input(key="kg_key").input("alice-secret")
    at.checkbox(key="kg_remember").check()
    at.button[0].click()
    at.run()
    p = kaggle.kaggle_json_path()
    assert p.exists() and stat.S_IMODE(p.stat().st_mode) == 0o600
    assert any(str(p) in i.value for i in at.info)


def test_import_from_path_runs_in_background_and_shows_summary(tmp_path, fer_sample):
    z = zip_tree(fer_sample, tmp_path / "small.zip")
    at = _page()
    at.text_input(key="imp_path").input(str(z))
    at.run()
    assert at.text_input(key="imp_name").value == "small"
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    from ui.common import job_manager
    jm = job_manager()
    jobs = jm.list("import")
    assert jobs and jobs[0].dataset == "small"
    st = jm.wait(jobs[0].id, timeout=120)
    assert st.state == "done", jm.log(jobs[0].id)
    at.run()
    assert not at.exception
    assert any(h.value == "Summary: small" for h in at.header)
    assert at.metric[0].value == f"{len(fer_sample):,}"
    counts = at.dataframe[0].value
    assert int(counts["total"].sum()) == len(fer_sample)
    assert list(counts.index) == ["train", "val", "test"]
    assert len(at.get("imgs")) >= 1 or len(at.get("image")) >= 1


def test_bad_import_path_shows_error():
    at = _page()
    at.text_input(key="imp_path").input("/definitely/not/here.zip")
    at.run()
    at.text_input(key="imp_name").input("x")
    at.run()
    next(b for b in at.button if b.label == "Import").click()
    at.run()
    assert any("does not exist" in e.value for e in at.error)
    assert datasets.list_datasets() == []
