"""Issue 14: an export never deletes what it did not write; a full disk is a clear error and loses nothing."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, import_and_scan
from fer_core import cli, config, decisions, export, locks, recipe, review
from fer_core.errors import DiskFull, InvalidInput


@pytest.fixture
def ds(tmp_path, fer_sample):
    import_and_scan(tmp_path, fer_sample, "ex")
    rec = recipe.default_recipe(decisions.load_inputs("ex").signals)
    return rec


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _personal(folder: Path) -> dict[str, bytes]:
    (folder / "sub").mkdir(parents=True)
    (folder / "thesis.txt").write_text("three years of work")
    (folder / "sub" / "notes.md").write_text("# notes")
    return _files(folder)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


def test_non_empty_folder_is_refused_and_left_intact(ds, tmp_path):
    folder = tmp_path / "mine"
    before = _personal(folder)
    with pytest.raises(InvalidInput, match="not empty") as err:
        export.export("ex", ds, "mine", out_dir=folder)
    assert str(folder) in err.value.message and "thesis.txt" in err.value.message and err.value.hint
    assert _files(folder) == before and _leftovers(tmp_path) == []


def _cache() -> Path:
    return Path(os.path.realpath(config.cache_root()))


@pytest.mark.parametrize("where", ["cache", "parent of cache", "datasets", "dataset home", "inside dataset",
                                   "exports root", "inside an export", "home"])
def test_cache_its_insides_its_parents_and_home_are_refused(ds, tmp_path, monkeypatch, where):
    cache = _cache()
    home = tmp_path / "home"       # a stand-in: a broken check must not be able to touch the real home
    _personal(home)
    monkeypatch.setenv("HOME", str(home))
    target = {"cache": cache, "parent of cache": cache.parent, "datasets": cache / "datasets",
              "dataset home": cache / "datasets" / "ex", "inside dataset": cache / "datasets" / "ex" / "new",
              "exports root": cache / "exports", "inside an export": cache / "exports" / "old" / "train",
              "home": home}[where]
    before, home_before = _files(cache), _files(home)
    with pytest.raises(InvalidInput, match="Cannot export to"):
        export.export("ex", ds, "x", out_dir=target)
    assert _files(cache) == before and _files(home) == home_before
    assert not (cache / "datasets" / "ex" / "new").exists()


def test_filesystem_root_and_real_home_are_refused_before_anything_is_written():
    for target in ("/", Path.home(), Path.home().parent):   # checked only: never handed to export()
        with pytest.raises(InvalidInput, match="contains|is your home"):
            export.check_target(target)


def test_reexport_replaces_only_an_earlier_export(ds, tmp_path):
    out = tmp_path / "out"
    out.mkdir()                                    # an empty folder is fine to fill
    first = export.export("ex", ds, "out", out_dir=out)
    assert json.loads((out / "manifest.json").read_text())["format"] == "fer-export/1"
    ds = ds.with_filter("sharpness", min=float(np.percentile(decisions.load_inputs("ex").signals["sharpness"], 50)))
    second = export.export("ex", ds, "out", out_dir=out)   # an earlier export is replaced
    assert second.manifest["counts"]["after_total"] < first.manifest["counts"]["after_total"]
    on_disk = [p for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"]
    assert len(on_disk) == second.manifest["counts"]["after_total"] and _leftovers(tmp_path) == []
    # once the person puts something of their own in it, it is no longer only an export: refused
    (out / "thesis.txt").write_text("mine")
    before = _files(out)
    with pytest.raises(InvalidInput, match="not an earlier export"):
        export.export("ex", ds, "out", out_dir=out)
    assert _files(out) == before


def test_export_holds_the_dataset_lock(ds, monkeypatch):
    seen = []
    real_write = export._write
    monkeypatch.setattr(export, "_write", lambda *a, **k: (seen.append(locks.is_locked("ex")), real_write(*a, **k))[1])
    export.export("ex", ds, "locked")
    assert seen == [True] and not locks.is_locked("ex")


def test_cli_refuses_a_personal_folder_and_the_cache(ds, tmp_path):
    folder = tmp_path / "mine"
    before = _personal(folder)
    cache_before = _files(_cache())
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for target in (folder, _cache()):
        r = subprocess.run([sys.executable, "-m", "fer_core", "--quiet", "export", "ex", "--out", str(target)],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1, r.stdout + r.stderr
        assert f"Error: Cannot export to '{target}'" in r.stderr and "What to do:" in r.stderr
        assert "Traceback" not in r.stderr
    assert _files(folder) == before and _files(_cache()) == cache_before


def _fill_disk_after(monkeypatch, n: int) -> None:
    real_copy, calls = shutil.copyfile, []

    def copy(src, dst, *a, **k):
        calls.append(dst)
        if len(calls) > n:
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_copy(src, dst, *a, **k)

    monkeypatch.setattr(export.shutil, "copyfile", copy)


def test_disk_full_during_export_keeps_the_previous_export(ds, monkeypatch):
    root = export.export("ex", ds, "full").path
    before = _files(root)
    _fill_disk_after(monkeypatch, 20)
    with pytest.raises(DiskFull, match="disk filled up") as err:
        export.export("ex", ds, "full")
    assert "free now" in err.value.message and "export again" in err.value.hint
    assert _files(root) == before and _leftovers(root.parent) == []


def test_disk_full_export_from_the_cli_is_a_sentence(ds, monkeypatch, capsys):
    _fill_disk_after(monkeypatch, 5)
    assert cli.main(["--quiet", "export", "ex", "--export-name", "cli-full"]) == 1
    err = capsys.readouterr().err
    assert "Error: The disk filled up" in err and "Traceback" not in err
    assert not (export.exports_root() / "cli-full").exists() and _leftovers(export.exports_root()) == []


@pytest.mark.parametrize("how", ["sqlite full", "raised"])
def test_disk_full_while_writing_an_override(tmp_path, monkeypatch, how):
    rs = review.ReviewStore(tmp_path / "review.sqlite")
    rs.set(["a", "b"], "reject")
    state = (rs.overrides().to_dict("list"), rs.history().to_dict("list"))
    with monkeypatch.context() as m:
        if how == "sqlite full":   # the real SQLITE_FULL: the database may not grow by a single page
            real_connect = sqlite3.connect

            def connect(*a, **k):
                c = real_connect(*a, **k)
                c.execute(f"PRAGMA max_page_count={c.execute('PRAGMA page_count').fetchone()[0]}")
                return c

            m.setattr(review.sqlite3, "connect", connect)
            ids = [f"img-{i}" for i in range(3000)]
        else:
            def full(*a, **k):
                raise sqlite3.OperationalError("database or disk is full")

            m.setattr(review.ReviewStore, "_apply", staticmethod(full))
            ids = ["c"]
        with pytest.raises(DiskFull, match="override was not saved") as err:
            rs.set(ids, "relabel", label="happy")
    assert "Free space" in err.value.hint
    assert (rs.overrides().to_dict("list"), rs.history().to_dict("list")) == state   # nothing half-written
    rs.set("c", "keep")                                                           # space freed: works again
    assert rs.get("c") == ("keep", None)
