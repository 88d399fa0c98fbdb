"""A full disk during a scan is a sentence, keeps the finished batches, and the next scan completes."""

from __future__ import annotations

import errno

import pandas as pd
import pytest

from conftest import import_and_scan
from fer_core import datasets, store
from fer_core.errors import DiskFull


def test_disk_full_during_scan_keeps_batches_and_resumes(tmp_path, fer_sample, monkeypatch):
    files = dict(list(fer_sample.items())[:96])
    import_and_scan(tmp_path, files, "ref")
    import_and_scan(tmp_path, files, "d", scan=False)
    real = store._write_part
    calls = {"n": 0}

    def full_after_two(*a, **kw):
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **kw)

    monkeypatch.setattr(store, "_write_part", full_after_two)
    with pytest.raises(DiskFull, match="disk filled up during the scan") as ei:
        store.scan("d", workers=1, batch_size=16)
    assert "resumes" in ei.value.hint
    assert not store.family_status("d")["quality"]["complete"], "a partial scan never passes for complete"
    monkeypatch.setattr(store, "_write_part", real)
    res = store.scan("d", workers=1, batch_size=16)
    assert res.reused["quality"] >= 16 and res.computed["quality"] < 96
    for f in ("quality", "duplicates"):
        pd.testing.assert_frame_equal(store.load_family(datasets.load("d"), f),
                                      store.load_family(datasets.load("ref"), f))
