"""One writer at a time per dataset (issue 14, item 2): a re-import waits for a running scan, two scans do
the work once, the CLI and the job queue share the lock, a killed scan leaves no stale lock, rows written
against another import are never reused and unreadable rows are retried. Driven by events, not sleeps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import pandas as pd
import pytest

from conftest import ROOT, cli_paused_after, import_and_scan, write_tree
from fer_core import datasets, locks, recipe as recipe_mod, store
from fer_core.errors import Busy

WAIT = 120  # seconds: a bound on waiting for an event, never a race


def _sample(fer_sample, n):
    return dict(list(fer_sample.items())[:n])


def _tables(name):
    ds = datasets.load(name)
    return {f: store.load_family(ds, f) for f in ("quality", "duplicates")}


class _Gate:
    """A progress callback that parks the scan after its first batch until released."""

    def __init__(self, stage="scan"):
        self.stage, self.reached, self.release = stage, threading.Event(), threading.Event()

    def __call__(self, ev):
        if ev.stage == self.stage and ev.done > 0 and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(WAIT)


def _in_thread(fn, *a, **kw):
    out = {}

    def run():
        try:
            out["result"] = fn(*a, **kw)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, out


def test_reimport_waits_for_running_scan_and_leaves_no_wrong_rows(tmp_path, fer_sample):
    files = _sample(fer_sample, 200)
    import_and_scan(tmp_path, files, "ref")
    import_and_scan(tmp_path, files, "d", scan=False)
    gate = _Gate()
    scan_t, scan_out = _in_thread(store.scan, "d", workers=1, batch_size=16, progress=gate)
    assert gate.reached.wait(WAIT)
    # the re-import (here with fewer files, so the data folder is really swapped) must wait for the scan
    smaller = write_tree(tmp_path / "src-smaller", dict(list(files.items())[:150]))
    waiting = threading.Event()
    imp_t, imp_out = _in_thread(datasets.import_dataset, smaller, "d",
                                progress=lambda ev: ev.stage == "waiting" and waiting.set())
    assert waiting.wait(WAIT), "the import should wait for the scan"
    assert imp_t.is_alive() and "result" not in imp_out
    gate.release.set()
    scan_t.join(WAIT)
    imp_t.join(WAIT)
    assert "error" not in scan_out and "error" not in imp_out, (scan_out, imp_out)
    q = _tables("d")["quality"]
    assert (q["scan_error"].fillna("") == "").all(), "no image may be recorded as unreadable"
    pd.testing.assert_frame_equal(q, _tables("ref")["quality"])
    res = store.scan("d", workers=1)  # the smaller import reuses every row
    assert res.computed == {"quality": 0, "duplicates": 0} and res.errors == 0
    assert store.family_status("d")["quality"]["complete"]


def test_two_scans_at_once_do_the_work_once(tmp_path, fer_sample):
    import_and_scan(tmp_path, _sample(fer_sample, 120), "d", scan=False)
    gate = _Gate()
    first_t, first = _in_thread(store.scan, "d", workers=1, batch_size=16, progress=gate)
    assert gate.reached.wait(WAIT)
    with pytest.raises(Busy, match="scan of 'd' is running"):
        with locks.dataset_lock("d", "scan", wait=False):
            pass
    waiting = threading.Event()
    second_t, second = _in_thread(store.scan, "d", workers=1,
                                  progress=lambda ev: ev.stage == "waiting" and waiting.set())
    assert waiting.wait(WAIT)
    gate.release.set()
    first_t.join(WAIT)
    second_t.join(WAIT)
    assert "error" not in first and "error" not in second, (first, second)
    assert first["result"].computed["quality"] == 120
    assert second["result"].computed == {"quality": 0, "duplicates": 0}


def test_cli_waits_for_the_lock_and_job_queue_key_is_the_same_lock(tmp_path, fer_sample):
    import_and_scan(tmp_path, _sample(fer_sample, 60), "d", scan=False)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with locks.dataset_lock("d", "import"):
        proc = subprocess.Popen([sys.executable, "-m", "fer_core", "scan", "d", "--workers", "1"], env=env,
                                cwd=ROOT, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        said, lines = threading.Event(), []

        def read():
            for line in proc.stderr:
                lines.append(line)
                if "Waiting" in line:
                    said.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        assert said.wait(WAIT), f"the CLI should say that it waits: {lines}"
        assert any("import of 'd' is running" in ln for ln in lines)
        assert proc.poll() is None
    out = proc.stdout.read()
    proc.wait(WAIT)
    reader.join(WAIT)
    err = "".join(lines)
    assert proc.returncode == 0, err
    assert "60 computed" in out
    # a job started by the app holds the queue key dataset-<name>, and the engine inside re-enters it
    r = subprocess.run([sys.executable, "-m", "fer_core", "--quiet", "--exclusive", "dataset-d", "scan", "d"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 0, r.stderr
    assert not locks.is_locked("d")


def test_killed_scan_leaves_no_stale_lock(tmp_path, fer_sample):
    """SIGKILL of the scan's parent alone: its orphaned pool workers must not keep the dataset locked."""
    import_and_scan(tmp_path, _sample(fer_sample, 300), "d", scan=False)
    proc = cli_paused_after(tmp_path, ["--quiet", "scan", "d", "--workers", "2", "--batch-size", "8"],
                            "fer_core.store:_write_part", after=1, first_arg_has="/quality/")
    try:
        assert locks.is_locked("d")       # mid-scan, with its pool of workers running
        os.kill(proc.pid, signal.SIGKILL)  # the parent only, as a crash would
        proc.wait()
        assert not locks.is_locked("d"), "a dead scan must not leave the dataset locked"
        res = store.scan("d", workers=1)
        assert res.errors == 0 and res.reused["quality"] >= 8
        assert store.family_status("d")["quality"]["complete"]
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned workers
        except ProcessLookupError:
            pass


def test_unreadable_rows_are_retried(tmp_path, fer_sample):
    files = _sample(fer_sample, 80)
    import_and_scan(tmp_path, files, "ref")
    ds = import_and_scan(tmp_path, files, "d", scan=False)
    victim = ds.images / ds.catalog["path"].iloc[0]
    hidden = victim.with_name(victim.name + ".away")
    os.rename(victim, hidden)
    res = store.scan("d", workers=1)
    assert res.errors == 1
    table = store.family_dir(datasets.load("d"), "quality") / "table.parquet"
    mtime = table.stat().st_mtime_ns
    res = store.scan("d", workers=1)  # still unreadable: retried, but nothing is rewritten or recounted
    assert res.errors == 1 and res.computed == {"quality": 0, "duplicates": 0}
    assert table.stat().st_mtime_ns == mtime
    os.rename(hidden, victim)
    res = store.scan("d", workers=1)
    assert res.errors == 0 and res.computed["quality"] == 1
    for f, t in _tables("ref").items():
        pd.testing.assert_frame_equal(_tables("d")[f], t)


def test_parts_written_against_another_import_are_not_reused(tmp_path, fer_sample):
    files = _sample(fer_sample, 64)
    import_and_scan(tmp_path, files, "ref")
    ds = import_and_scan(tmp_path, files, "d", scan=False)
    good = _tables("ref")["quality"]
    bogus = good.copy()
    bogus["sharpness"] = -1.0
    parts = store.family_dir(ds, "quality") / "parts"
    parts.mkdir(parents=True)
    bogus.to_parquet(parts / f"part-{'0' * 12}-{bogus['id'].iloc[0]}-{len(bogus)}.parquet", index=False)
    res = store.scan("d", workers=1)
    assert res.computed["quality"] == 64
    pd.testing.assert_frame_equal(_tables("d")["quality"], good)
    dec = recipe_mod.decide(store.load_signals("d"), recipe_mod.default_recipe(store.load_signals("ref")))
    assert len(dec) == 64
