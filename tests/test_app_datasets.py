"""AppTest: the home page and the Datasets page (credentials form, import job, summary)."""

from __future__ import annotations

import stat

from streamlit.testing.v1 import AppTest

from conftest import ROOT, zip_tree
from fer_core import datasets
from fer_core.config import import_roots
from fer_core.sources import kaggle
from waiting import wait_job


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


def _import_button(at):
    return next(b for b in at.button if b.label == "Import")


def _jobs():
    from ui.common import job_manager

    return job_manager()


def test_import_from_path_runs_in_background_and_shows_summary(tmp_path, fer_sample):
    z = zip_tree(fer_sample, import_roots()[0] / "small.zip")   # the default import folder: <cache>/import
    at = _page()
    assert at.radio(key="imp_how").value == "path"                  # loopback (.streamlit/config.toml)
    at.text_input(key="imp_path").input(str(z))
    at.run()
    assert at.text_input(key="imp_name").value == "small"
    _import_button(at).click()
    at.run()
    jm = _jobs()
    jobs = jm.list("import")
    assert jobs and jobs[0].dataset == "small"
    argv = jm._meta(jobs[0].id)["argv"]
    assert argv[:2] == ["import", str(z.resolve())] and argv[argv.index("--within") + 1] == str(import_roots()[0])
    st = wait_job(jm, jobs[0].id)
    assert st.state == "done", jm.log(jobs[0].id)
    at.run()
    assert not at.exception
    assert any(h.value == "Summary: small" for h in at.header)
    assert at.metric[0].value == f"{len(fer_sample):,}"
    counts = at.dataframe[0].value
    assert int(counts["total"].sum()) == len(fer_sample)
    assert list(counts.index) == ["train", "val", "test"]
    assert len(at.get("image")) == 1      # the sample montage (one image: a row of examples per label)
    # importing over an existing name asks first
    at.text_input(key="imp_name").input("small")
    at.run()
    assert "Replace the images of the existing dataset 'small'" in at.checkbox(key="imp_replace_small").label
    assert _import_button(at).disabled
    at.checkbox(key="imp_replace_small").check()
    at.run()
    assert not _import_button(at).disabled


def test_server_path_outside_the_import_folders_refused_alike(tmp_path, fer_sample):
    """Issue 14: one message whether the path exists or not; nothing is started."""
    outside = zip_tree(dict(list(fer_sample.items())[:5]), tmp_path / "outside.zip")
    seen = []
    for path in ("/definitely/not/here.zip", str(outside), "/etc/passwd"):
        at = _page()
        at.text_input(key="imp_path").input(path)
        at.run()
        at.text_input(key="imp_name").input("x")
        at.run()
        _import_button(at).click()
        at.run()
        errs = [e.value.replace(path, "<path>") for e in at.error]
        assert len(errs) == 1 and "not a file or folder inside the import folders" in errs[0]
        assert str(import_roots()[0]) in errs[0]        # says where to put it instead
        seen.append(errs[0])
    assert len(set(seen)) == 1
    assert _jobs().list("import") == [] and datasets.list_datasets() == []


def test_path_import_off_when_not_on_loopback(monkeypatch):
    from streamlit import config

    monkeypatch.delenv("FER_ALLOW_PATH_IMPORT", raising=False)
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = _page()
        assert not at.get("radio") and not [t for t in at.text_input if t.key == "imp_path"]
        assert any("path on the server is off" in i.value and "FER_ALLOW_PATH_IMPORT=1" in i.value for i in at.info)
        assert at.file_uploader(key="imp_upload")                      # upload stays available
        monkeypatch.setenv("FER_ALLOW_PATH_IMPORT", "1")               # the operator opts in
        at = _page()
        assert at.radio(key="imp_how").value == "path" and at.text_input(key="imp_path")
    finally:
        config.set_option("server.address", before)


def test_csv_text_never_reaches_the_page_or_the_job_log(tmp_path):
    secret = "db_password=hunter2-do-not-show"
    p = import_roots()[0] / "settings.csv"
    p.write_text(f"{secret},x\n1,2\n")
    at = _page()
    at.text_input(key="imp_path").input(str(p))
    at.run()
    _import_button(at).click()
    at.run()
    jm = _jobs()
    job = jm.list("import")[0]
    assert wait_job(jm, job.id).state == "failed"
    at.run()
    shown = " ".join(e.value for e in at.error)
    assert "no 'emotion' column" in shown and "hunter2" not in shown
    log = jm.log(job.id)
    assert "no 'emotion' column" in log and "hunter2" not in log and "db_password" not in log


def test_import_form_source_and_name_are_what_the_person_chose(tmp_path, fer_sample):
    """Issue 15: a leftover upload never wins over a typed path; removing an upload keeps a typed name; an old
    error is not shown while a new import runs."""
    from fer_core import locks

    z = zip_tree(fer_sample, import_roots()[0] / "small.zip")
    at = _page()
    at.radio(key="imp_how").set_value("upload")
    at.run()
    assert not [t for t in at.text_input if t.key == "imp_path"]
    at.file_uploader(key="imp_upload").set_value(("junk.csv", b"a,b\n1,2\n", "text/csv"))
    at.run()
    assert at.text_input(key="imp_name").value == "junk"
    at.text_input(key="imp_name").input("mine")
    at.run()
    at.file_uploader(key="imp_upload").set_value(None)              # removing the upload keeps the typed name
    at.run()
    assert at.text_input(key="imp_name").value == "mine"
    at.file_uploader(key="imp_upload").set_value(("junk.csv", b"a,b\n1,2\n", "text/csv"))
    at.run()
    assert at.text_input(key="imp_name").value == "mine"            # a typed name is never overwritten
    _import_button(at).click()                                      # the junk upload fails…
    at.run()
    jm = _jobs()
    failed = jm.list("import")[0]
    assert wait_job(jm, failed.id).state == "failed"
    at.run()
    assert any("no 'emotion' column" in e.value for e in at.error)
    at.radio(key="imp_how").set_value("path")                        # …then a typed path: the upload is not used
    at.run()
    at.text_input(key="imp_path").input(str(z))
    at.run()
    with locks.dataset_lock("mine", "test"):                         # keeps the new import queued, deterministically
        _import_button(at).click()
        at.run()
        new = next(j for j in jm.list("import") if j.id != failed.id)
        assert jm._meta(new.id)["argv"][1] == str(z.resolve())
        at.run()
        assert not jm.status(new.id).finished
        assert not at.error, [e.value for e in at.error]             # the old error is gone while this one runs
        assert len(at.main.get("progress")) == 1                        # its progress bar (queued) is shown
    assert wait_job(jm, new.id).state == "done", jm.log(new.id)
    assert len(datasets.load("mine").catalog) == len(fer_sample)
