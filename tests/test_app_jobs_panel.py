"""Issue 15 item 7: one always-visible jobs panel (sidebar, every page) with live progress, throughput, ETA and
Cancel; estimates from rates measured here (or bench/RESULTS.md, said so) before long jobs start."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from conftest import ROOT, import_and_scan
from fer_core import decisions, estimates, locks, recipe
from fer_core.progress import FileProgress, atomic_write_json, emit
from ui.common import PAGES, job_manager
from waiting import wait_job


def _page(path: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.run()
    if path != "app.py":
        at.switch_page(path)
        at.run()
    assert not at.exception, at.exception
    return at


def _panel_texts(at) -> list[str]:
    return [p.proto.text for p in at.sidebar.get("progress")] + [c.value for c in at.sidebar.caption]


def test_every_page_shows_a_queued_job_in_the_sidebar_and_cancels_it_there(tmp_path, fer_sample):
    import_and_scan(tmp_path, dict(list(fer_sample.items())[:40]), "sub", scan=False)
    jm = job_manager()
    with locks.dataset_lock("sub", "test"):            # the scan waits for it: queued, deterministically
        job = jm.start("scan", ["scan", "sub"], dataset="sub", exclusive="dataset-sub")
        deadline = time.time() + 120
        while jm.status(job).state != "queued":
            assert not jm.status(job).finished, jm.log(job)
            assert time.time() < deadline, "the job never reported that it waits"
            time.sleep(0.05)
        for path, _, _ in PAGES:
            at = _page(path)
            texts = _panel_texts(at)
            assert any("Signal scan 'sub'" in t and "queued" in t for t in texts), (path, texts)
            assert at.sidebar.button(key=f"jp-cancel-{job}")
        at.sidebar.button(key=f"jp-cancel-{job}").click()
        at.run()
        assert jm.status(job).state == "cancelled"
        assert any("Signal scan 'sub' was cancelled" in c.value for c in at.sidebar.caption)
        assert not any(b.key == f"jp-cancel-{job}" for b in at.sidebar.button)


def test_a_running_job_shows_throughput_and_time_left(tmp_path, fer_sample):
    """A job process (stand-in child) mid-way through 10,000 images: 3,000 done in the 1,000 s since its stage began
    (long enough that the seconds a loaded machine takes to draw the page do not move the rate's first decimal)."""
    import_and_scan(tmp_path, dict(list(fer_sample.items())[:20]), "sub", scan=False)
    jm = job_manager()
    child = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"], start_new_session=True)
    jid = "20990101-000000-faces-abcdef"
    jdir = jm.root / jid
    jdir.mkdir(parents=True)
    atomic_write_json(jdir / "job.json", {"id": jid, "kind": "faces", "dataset": "sub", "argv": ["scan", "sub"],
                                         "label": "", "created": time.time() - 1030, "pid": child.pid})
    fp = FileProgress(jdir / "progress.json")
    emit(fp, "scan:faces+embeddings", 0, 10_000, "images")
    emit(fp, "scan:faces+embeddings", 3000, 10_000, "images")
    fp.finish("running")
    prog = json.loads((jdir / "progress.json").read_text())
    prog["stages"]["scan:faces+embeddings"]["t0"] -= 1000         # the stage began 1,000 s ago
    atomic_write_json(jdir / "progress.json", prog)
    try:
        st_ = jm.status(jid)
        assert st_.rate == pytest.approx(3.0, rel=0.01) and st_.eta_s == pytest.approx(7000 / 3, rel=0.01)
        at = _page("pages/4_Review.py")
        texts = _panel_texts(at)
        assert any("Face signals 'sub'" in t and "3,000 / 10,000" in t for t in texts), texts
        assert any(t.startswith("3.0 images/s · about 39 min left · running for 17 min") for t in texts), texts
        at.sidebar.button(key=f"jp-cancel-{jid}").click()
        at.run()
        assert jm.status(jid).state == "cancelled" and child.wait(10) is not None
    finally:
        child.kill()


def test_a_finished_jobs_rate_is_recorded_once_and_estimates_use_it(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "sub", scan=False)
    assert "nothing measured on this machine yet" in estimates.estimate("scan:faces+embeddings", 35_887).text()
    assert estimates.estimate("scan", 1000) is None   # no bench figure for it, nothing measured: no estimate
    jm = job_manager()
    job = jm.start("scan", ["scan", "sub"], dataset="sub", exclusive="dataset-sub")
    assert wait_job(jm, job).state == "done", jm.log(job)
    jm.status(job)
    jm.list()
    hist = estimates.history()
    assert [(e["job"], e["key"], e["units"]) for e in hist] == [(job, "scan", len(fer_sample))]
    assert hist[0]["stages"]["scan"]["unit"] == "images" and hist[0]["stages"]["scan"]["done"] == len(fer_sample)
    e = estimates.estimate("scan", 10 * len(fer_sample))
    assert e.seconds == pytest.approx(10 * len(fer_sample) / hist[0]["rate"])
    assert e.text().startswith("about ") and f"measured here on {time.strftime('%d %b %Y').lstrip('0')}" in e.text()


def test_long_jobs_show_an_estimate_before_they_start(tmp_path, fer_sample):
    """Bench figures stand in (and say so) before anything was measured here; a finished training job's rate
    replaces them."""
    import_and_scan(tmp_path, fer_sample, "sub")
    inp = decisions.load_inputs("sub")
    n_raw = int((inp.signals["split"] == "train").sum())
    dec = decisions.run(inp, recipe.default_recipe(inp.signals), None)
    n_cur = int((dec["keep"].to_numpy() & (inp.signals["split"] == "train").to_numpy()).sum())
    at = _page("pages/7_Train.py")
    caps = [c.value for c in at.caption if c.value.startswith("⏱️ Estimated")]
    # A/B form default: standard × 3 seeds, raw + curated arms (no label signals: no relabel arm)
    secs = (n_raw + n_cur) * 3 * 24 / estimates.BENCH["train:standard"]
    ab = f"about {estimates.duration(secs)} at the rate in bench/RESULTS.md (299 images/s"     # no early stopping
    assert any(c.startswith("⏱️ Estimated (6 runs): ") and ab in c and "up to" not in c
               and "nothing measured on this machine yet" in c
               for c in caps), caps
    labels = f"about {estimates.duration(n_raw * 3 * 7 / estimates.BENCH['labels'])} at the rate in bench/RESULTS.md"
    assert any(labels in c for c in caps), caps
    quality = _page("pages/2_Quality.py")
    assert any("⏱️ Estimated: about" in c.value and "bench/RESULTS.md" in c.value for c in quality.caption)
    # a real training job finishes: its measured rate is used from now on
    jm = job_manager()
    job = jm.start("train", ["train", "sub", "--preset", "smoke", "--epochs", "1", "--run-id", "r1"], dataset="sub",
                   exclusive="train-sub")
    assert wait_job(jm, job).state == "done", jm.log(job)
    jm.status(job)
    (e,) = estimates.history()
    assert e["key"] == "train:smoke" and e["units"] == n_raw
    at.selectbox(key="tr_preset").select("smoke")
    at.run()
    want = estimates.duration(n_raw * 4 / e["rate"])
    caps = [c.value for c in at.caption if c.value.startswith("⏱️ Estimated")]
    assert any(c.startswith(f"⏱️ Estimated: about {want} at the rate measured here on") for c in caps), caps


def test_a_training_estimate_takes_the_settings_a_baseline_trained_with(tmp_path):
    """An A/B that reuses another A/B's raw runs trains as they did: its estimate counts their epochs and cap."""
    rate = estimates.BENCH["train:standard"]
    base = estimates.for_training("standard", [10_000, 10_000], cache=tmp_path)
    assert base.seconds == pytest.approx(20_000 * 24 / rate)
    assert estimates.for_training("standard", [10_000, 10_000], cache=tmp_path, epochs=6).seconds \
        == pytest.approx(20_000 * 6 / rate)
    assert estimates.for_training("standard", [10_000, 10_000], cache=tmp_path, max_train=2_000, lr_decay=None).seconds \
        == pytest.approx(4_000 * 24 / rate)
