"""Background jobs: a subprocess with progress on disk, survives its starter, cancels cleanly."""

from __future__ import annotations

import time

from fer_core import datasets
from fer_core.jobs import JobManager


def test_download_job_reports_progress_and_finishes(fake_kaggle):
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": fake_kaggle.key})
    seen_stages, fractions = set(), []
    deadline = time.time() + 300
    while time.time() < deadline:
        st = jm.status(jid)
        if st.stage:
            seen_stages.add(st.stage)
            fractions.append((st.stage, st.fraction))
        if st.finished:
            break
        time.sleep(0.1)
    assert st.state == "done", jm.log(jid)
    assert {"download", "catalog"} <= seen_stages
    assert "35,887 images" in st.info["summary"]
    assert datasets.list_datasets() == ["fer2013"]
    # the key went through the environment only, never onto the command line or into job files
    job_dir = jm.root / jid
    for f in job_dir.iterdir():
        assert fake_kaggle.key not in f.read_text(errors="replace")


def test_cancel_marks_cancelled_and_registers_nothing(fake_kaggle):
    fake_kaggle.drop_after = None
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": fake_kaggle.key})
    deadline = time.time() + 120
    while time.time() < deadline and jm.status(jid).stage not in ("extract", "catalog"):
        time.sleep(0.05)
    st = jm.cancel(jid)
    assert st.state == "cancelled", jm.log(jid)
    assert datasets.list_datasets() == []
    assert not list(datasets.dataset_dir("fer2013").glob(".staging-*"))


def test_failed_job_carries_the_error(fake_kaggle):
    jm = JobManager()
    jid = jm.start("download", ["download", "fer2013"], dataset="fer2013",
                   env={"KAGGLE_USERNAME": fake_kaggle.username, "KAGGLE_KEY": "nope"})
    st = jm.wait(jid, timeout=120)
    assert st.state == "failed"
    assert st.error["code"] == "auth" and "HTTP 401" in st.error["message"]


def test_killed_job_is_reported_failed_not_running(tmp_path, fer_sample):
    import os
    import signal

    from conftest import zip_tree
    z = zip_tree(fer_sample, tmp_path / "s.zip")
    jm = JobManager()
    jid = jm.start("import", ["import", str(z), "--name", "k"], dataset="k")
    pid = jm._meta(jid)["pid"]
    os.killpg(pid, signal.SIGKILL)
    st = jm.wait(jid, timeout=30)
    assert st.state == "failed" and "ended unexpectedly" in st.error["message"]


def test_exclusive_jobs_queue(tmp_path, fer_sample):
    """A job keyed dataset-<name> waits ("queued") on the dataset's writer lock, the one the engine and the CLI take."""
    from conftest import zip_tree
    from fer_core import locks

    z = zip_tree(fer_sample, tmp_path / "s.zip")
    jm = JobManager()
    with locks.dataset_lock("q", "scan"):  # stands for a running writer of the same dataset
        b = jm.start("import", ["import", str(z), "--name", "q"], dataset="q", exclusive="dataset-q")
        deadline = time.time() + 60
        while time.time() < deadline and jm.status(b).state != "queued":
            time.sleep(0.05)
        assert jm.status(b).state == "queued"
        assert datasets.list_datasets() == []
    st = jm.wait(b, timeout=120)
    assert st.state == "done" and datasets.list_datasets() == ["q"]
