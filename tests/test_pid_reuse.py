"""A run whose process died looks dead even when another process now has its pid (pids wrap around): a killed A/B
run is then resumed from its checkpoint instead of being taken for running (seen: a control run retrained from
epoch 1 because a test's process had reused its number)."""

from __future__ import annotations

import json
import time

from fer_core.fsutil import pid_alive
from fer_core.train import runs


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
