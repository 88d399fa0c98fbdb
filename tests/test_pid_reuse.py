"""A run whose process died looks dead even when another process now has its pid (pids wrap around): a killed A/B
run is then resumed from its checkpoint instead of being taken for running (seen: a control run retrained from
epoch 1 because a test's process had reused its number)."""

from __future__ import annotations

import json
import time

from fer_core import fsutil
from fer_core.fsutil import pid_alive
from fer_core.train import runs
from waiting import wait_job


def _status(tmp_path, monkeypatch, pid: int, started: float) -> None:
    monkeypatch.setattr(runs, "runs_root", lambda name, cache=None: tmp_path / "runs")
    rdir = tmp_path / "runs" / "r1"
    rdir.mkdir(parents=True)
    (rdir / "status.json").write_text(json.dumps({"state": "running", "pid": pid, "started": started}))


def test_a_reused_pid_is_not_the_recorded_process(live_pid):
    assert pid_alive(live_pid.pid) and pid_alive(live_pid.pid, time.time())
    assert not pid_alive(live_pid.pid, time.time() - 3600)      # recorded an hour before this process existed


def test_run_info_reports_a_run_whose_pid_was_reused_as_died(tmp_path, monkeypatch, live_pid):
    _status(tmp_path, monkeypatch, live_pid.pid, time.time() - 3600)
    st = runs.run_info("ds", "r1", tmp_path)["status"]
    assert st["state"] == "failed" and st["error"]["code"] == "died"


def test_run_info_keeps_a_live_run_running(tmp_path, monkeypatch, live_pid):
    _status(tmp_path, monkeypatch, live_pid.pid, time.time())
    assert runs.run_info("ds", "r1", tmp_path)["status"]["state"] == "running"


def _job_left_by_a_dead_process(root, pid: int, pid_started: float) -> str:
    jdir = root / "20261130-000000-scan-abcdef"
    jdir.mkdir(parents=True)
    (jdir / "job.json").write_text(json.dumps({"id": jdir.name, "kind": "scan", "dataset": "ds", "argv": [],
                                               "label": "", "created": pid_started - 1, "exclusive": None,
                                               "pid": pid, "pid_started": pid_started}))
    (jdir / "progress.json").write_text(json.dumps({"state": "running", "stages": {}, "updated": pid_started}))
    return jdir.name


def test_a_job_whose_pid_was_reused_is_reported_failed(tmp_path, monkeypatch, live_pid):
    from fer_core import jobs
    monkeypatch.setattr(jobs, "jobs_root", lambda cache=None: tmp_path / "jobs")
    jm = jobs.JobManager()
    old = _job_left_by_a_dead_process(tmp_path / "jobs", live_pid.pid, time.time() - 3600)
    st = jm.status(old)
    assert st.state == "failed" and st.error["code"] == "died"
    mine = _job_left_by_a_dead_process(tmp_path / "jobs2", live_pid.pid, fsutil.process_started(live_pid.pid))
    monkeypatch.setattr(jobs, "jobs_root", lambda cache=None: tmp_path / "jobs2")
    assert jm.status(mine).state == "running"


def test_a_started_job_records_its_own_process_start(tmp_path, monkeypatch):
    from fer_core import jobs
    monkeypatch.setattr(jobs, "jobs_root", lambda cache=None: tmp_path / "jobs")
    jm = jobs.JobManager()
    jid = jm.start("scan", ["scan", "no-such-dataset"], dataset="no-such-dataset")
    meta = jm._meta(jid)
    assert meta["pid_started"] >= meta["created"] - 1.0
    st = wait_job(jm, jid)
    assert st.state == "failed"       # the dataset does not exist: the job ends with the CLI's error, not "died"
    assert st.error["code"] != "died"


def test_an_ab_whose_pid_was_reused_is_not_running(live_pid):
    from fer_core.train import ab
    doc = {"complete": False, "pid": live_pid.pid, "pid_started": time.time() - 3600, "runs": {}}
    assert not ab.is_running("ds", doc)
    doc["pid_started"] = fsutil.process_started(live_pid.pid)
    assert ab.is_running("ds", doc)
