"""Kaggle download end to end through the fake server: real HTTP, credentials, resume, errors, import."""

from __future__ import annotations

import errno
import json
import os
import stat

import pandas as pd
import pytest

from conftest import FER_COUNTS, FER_USAGE
from fer_core import acquire, datasets
from fer_core.errors import (AuthError, ConnectionDropped, DiskFull, IntegrityError, NetworkError, NoCredentials,
                             NotFound)
from fer_core.sources import kaggle
from fer_core.sources.kaggle import KaggleCredentials


def test_full_fer2013_download_exact_counts(fer2013_store):
    cache, res = fer2013_store
    cat = res.dataset.catalog
    assert len(cat) == 35887 and res.n_rejected == 0
    assert cat["usage"].value_counts().to_dict() == FER_USAGE
    assert cat["label"].value_counts().to_dict() == FER_COUNTS
    assert cat.groupby("usage")["split"].unique().map(list).to_dict() == {
        "Training": ["train"], "PublicTest": ["val"], "PrivateTest": ["test"]}
    src = res.dataset.meta["source"]
    assert src["kind"] == "kaggle" and src["slug"] == "msambare/fer2013" and src["version"] == 3
    assert src["md5"]  # verified against the server's x-goog-hash
    # the downloaded archive is kept
    assert os.path.exists(src["archive"])


def test_wrong_key_specific_error_and_nothing_registered(fake_kaggle):
    with pytest.raises(AuthError, match="HTTP 401") as ei:
        acquire.download_and_import("fer2013", creds=KaggleCredentials(fake_kaggle.username, "wrong-key"))
    assert "wrong-key" not in str(ei.value)
    assert "Check the username and key" in ei.value.hint
    assert datasets.list_datasets() == []


def test_token_auth_works_and_bad_token_refused(fake_kaggle):
    with pytest.raises(AuthError):
        kaggle.current_version("msambare/fer2013", KaggleCredentials(token="bad"))
    assert kaggle.current_version("msambare/fer2013", KaggleCredentials(token=fake_kaggle.token)) == 3


def test_unknown_slug_404(fake_kaggle):
    with pytest.raises(NotFound, match="no dataset 'nobody/nothing'"):
        acquire.download_and_import("nobody/nothing", creds=KaggleCredentials(fake_kaggle.username, fake_kaggle.key))
    assert datasets.list_datasets() == []


def test_no_credentials(fake_kaggle):
    with pytest.raises(NoCredentials) as ei:
        acquire.download_and_import("fer2013")
    assert "KAGGLE_USERNAME" in ei.value.hint


def test_credentials_resolution_order(tmp_path, monkeypatch):
    kaggle.save_kaggle_json(KaggleCredentials("fileuser", "filekey"))
    assert kaggle.resolve_credentials().source == "kaggle.json"
    monkeypatch.setenv("KAGGLE_USERNAME", "envuser")
    monkeypatch.setenv("KAGGLE_KEY", "envkey")
    assert kaggle.resolve_credentials().username == "envuser"
    typed = KaggleCredentials("typeduser", "typedkey")
    assert kaggle.resolve_credentials(typed) is typed
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok")
    assert kaggle.resolve_credentials().token == "tok"


def test_remember_writes_0600_and_key_never_shown(tmp_path):
    c = KaggleCredentials("someone", "super-secret-key")
    p = kaggle.save_kaggle_json(c)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert json.loads(p.read_text()) == {"username": "someone", "key": "super-secret-key"}
    assert "super-secret-key" not in repr(c) and "super-secret-key" not in str(c) and "***" in repr(c)


def test_connection_dropped_resumes_with_identical_catalog(fake_kaggle, fer2013_store):
    fake_kaggle.drop_after = 7_000_000
    fake_kaggle.drops_left = 2
    creds = KaggleCredentials(fake_kaggle.username, fake_kaggle.key)
    res = acquire.download_and_import("fer2013", creds=creds)
    ranges = [r[2] for r in fake_kaggle.requests if r[0] == "GET"]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:]) and len(ranges) == 3
    _, full = fer2013_store
    pd.testing.assert_frame_equal(res.dataset.catalog.drop(columns="dataset"),
                                  full.dataset.catalog.drop(columns="dataset"))


def test_interrupted_download_resumes_on_next_run(fake_kaggle, fer2013_store):
    creds = KaggleCredentials(fake_kaggle.username, fake_kaggle.key)
    fake_kaggle.drop_after = 3_000_000
    fake_kaggle.drops_left = 20  # more drops than retries: the first run gives up
    with pytest.raises(ConnectionDropped, match="resumes"):
        acquire.download_and_import("fer2013", creds=creds, cache=None)
    assert datasets.list_datasets() == []
    part = kaggle.download_dir("msambare/fer2013", 3) / "archive.zip.part"
    assert part.exists() and 0 < part.stat().st_size < 61_636_235
    have = part.stat().st_size
    fake_kaggle.drops_left = 0
    fake_kaggle.requests.clear()
    dl = kaggle.download_dataset("msambare/fer2013", creds)
    assert dl.resumed_from == have > 0 and dl.bytes == 61_636_235
    gets = [r for r in fake_kaggle.requests if r[0] == "GET"]
    # the redirect's response is closed after its headers; the bytes come from a Range request
    assert [g[2] for g in gets] == [None, f"bytes={dl.resumed_from}-"]
    res = acquire.download_and_import("fer2013", creds=creds)  # reuses the finished archive
    _, full = fer2013_store
    assert res.dataset.meta["catalog_hash"] == full.dataset.meta["catalog_hash"]


def test_corrupt_download_detected(fake_kaggle):
    fake_kaggle.corrupt = True
    with pytest.raises(IntegrityError, match="MD5"):
        kaggle.download_dataset("msambare/fer2013", KaggleCredentials(fake_kaggle.username, fake_kaggle.key))
    d = kaggle.download_dir("msambare/fer2013", 3)
    assert not (d / "archive.zip").exists() and not (d / "archive.zip.part").exists()


def test_network_unreachable(monkeypatch):
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    with pytest.raises(NetworkError, match="Cannot reach Kaggle") as ei:
        acquire.download_and_import("fer2013", creds=KaggleCredentials("u", "k"))
    assert "network connection" in ei.value.hint


def test_disk_full_keeps_partial_and_says_so(fake_kaggle, monkeypatch):
    real_stream = kaggle._stream

    def full_disk(resp, part, have, total, progress, cancel):
        with open(part, "ab") as fh:
            fh.write(next(resp.iter_content(1 << 20)))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(kaggle, "_stream", full_disk)
    with pytest.raises(DiskFull, match="disk is full") as ei:
        acquire.download_and_import("fer2013", creds=KaggleCredentials(fake_kaggle.username, fake_kaggle.key))
    assert "resumes" in ei.value.hint
    assert datasets.list_datasets() == []
    monkeypatch.setattr(kaggle, "_stream", real_stream)
    dl = kaggle.download_dataset("msambare/fer2013", KaggleCredentials(fake_kaggle.username, fake_kaggle.key))
    assert dl.resumed_from == 1 << 20


def test_progress_reports_download_and_import(fake_kaggle):
    stages = {}

    def prog(ev):
        stages.setdefault(ev.stage, []).append((ev.done, ev.total))

    acquire.download_and_import("fer2013", creds=KaggleCredentials(fake_kaggle.username, fake_kaggle.key),
                                progress=prog)
    assert {"download", "extract", "catalog"} <= set(stages)
    dl = stages["download"]
    assert dl[-1][0] == dl[-1][1] == 61_636_235 and len(dl) > 3
    assert [d for d, _ in dl] == sorted(d for d, _ in dl)
    assert stages["catalog"][-1] == (35887, 35887)


def test_two_downloads_of_one_slug_at_once_share_one_archive(fake_kaggle):
    """Issue 14: the same slug under two names at once; the second waits for the first (driven by events)."""
    import threading

    creds = KaggleCredentials(fake_kaggle.username, fake_kaggle.key)
    a_streaming, release, b_decided = threading.Event(), threading.Event(), threading.Event()
    b_events, results = [], {}

    def prog_a(ev):
        if ev.stage == "download" and ev.done > 0 and not a_streaming.is_set():
            a_streaming.set()
            release.wait(120)           # hold the first download mid-stream until the second has shown its hand

    def prog_b(ev):
        b_events.append(ev)
        if ev.stage in ("waiting", "download"):
            b_decided.set()

    def run(key, prog):
        try:
            results[key] = kaggle.download_dataset("msambare/fer2013", creds, progress=prog)
        except Exception as exc:  # noqa: BLE001 - asserted below
            results[key] = exc

    ta = threading.Thread(target=run, args=("a", prog_a))
    ta.start()
    assert a_streaming.wait(60), results
    tb = threading.Thread(target=run, args=("b", prog_b))
    tb.start()
    decided = b_decided.wait(60)
    release.set()
    ta.join(120)
    tb.join(120)
    assert decided and b_events[0].stage == "waiting", [(e.stage, e.message) for e in b_events]
    assert "a download of 'msambare/fer2013' is running" in b_events[0].message
    a, b = results["a"], results["b"]
    assert isinstance(a, kaggle.Download) and not a.reused and a.bytes == 61_636_235, a
    assert isinstance(b, kaggle.Download) and b.reused and b.path == a.path and b.bytes == a.bytes, b
    assert len([r for r in fake_kaggle.requests if r[0] == "GET"]) == 1   # the archive was fetched once
    assert not (a.path.parent / "archive.zip.part").exists()
