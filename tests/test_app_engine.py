"""Issue 19 in the app: the scan panel offers where the scan runs (this machine or a Ray cluster); the job it
starts carries the choice, and a cluster that cannot be reached is a clear job error, not a hang."""

from __future__ import annotations

import socket

from conftest import app_page
from fer_core import datasets
from fer_core.jobs import JobManager
from waiting import wait_job


def _free_port() -> int:
    with socket.socket() as s:               # bound, then closed: nothing listens there afterwards
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_scan_panel_runs_the_scan_where_the_person_chose(tmp_path, fer_sample):
    src = tmp_path / "src"
    for n, data in list(fer_sample.items())[:40]:
        p = src / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    datasets.import_dataset(src, "tiny")
    at = app_page("pages/2_Quality.py")
    radio = next(r for r in at.radio if r.key == "scan_engine")
    assert radio.value == "local"                                     # the embedded default
    radio.set_value("ray")
    at.run()
    port = _free_port()
    next(t for t in at.text_input if t.key == "scan_address").input(f"127.0.0.1:{port}")
    at.run()
    at.button(key="scan_btn").click()
    at.run()
    assert not at.exception, at.exception
    jm = JobManager()
    (js,) = jm.list(kind="scan", dataset="tiny")
    argv = jm._meta(js.id)["argv"]
    assert argv[argv.index("--engine") + 1] == "ray" and argv[argv.index("--address") + 1] == f"127.0.0.1:{port}"
    st = wait_job(jm, js.id)
    assert st.state == "failed", jm.log(js.id)
    assert f"Cannot reach the Ray cluster at 127.0.0.1:{port}" in st.error["message"]
    # back to this machine: the scan runs and the page moves on to the signals
    next(r for r in at.radio if r.key == "scan_engine").set_value("local")
    at.run()
    at.button(key="scan_btn").click()
    at.run()
    jobs = jm.list(kind="scan", dataset="tiny")
    newest = max(jobs, key=lambda j: j.created)
    assert "--engine" not in jm._meta(newest.id)["argv"]
    assert wait_job(jm, newest.id).state == "done", jm.log(newest.id)
    at.run()
    assert not at.exception, at.exception
    assert not [b for b in at.button if b.key == "scan_btn"]          # scanned: the panel gave way to the page
