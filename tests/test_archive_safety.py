"""Zip import refuses traversal, absolute paths, symlinks and bombs; nothing is written outside its target."""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path

import pytest

from fer_core import datasets
from fer_core.config import ImportLimits
from fer_core.errors import InvalidInput, UnsafeArchive
from fer_core.sources.archive import safe_extract


def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _good(fer_sample) -> dict[str, bytes]:
    return dict(list(fer_sample.items())[:5])


def _zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, data in entries:
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize("evil_name", ["../evil.jpg", "train/../../evil.jpg", "/tmp/evil_abs.jpg",
                                       "C:/evil.jpg", "..\\evil.jpg"])
def test_traversal_and_absolute_paths_refused(tmp_path, fer_sample, evil_name):
    entries = [(n, b) for n, b in _good(fer_sample).items()] + [(evil_name, b"x" * 10)]
    z = _zip(tmp_path / "evil.zip", entries)
    before = _snapshot(tmp_path)
    with pytest.raises(UnsafeArchive):
        datasets.import_dataset(z, "evil")
    assert datasets.list_datasets() == []
    after = _snapshot(tmp_path)
    # nothing appeared next to the zip, in /tmp, or in the store
    assert {p for p in after - before if "cache" not in p} == set()
    assert not Path("/tmp/evil_abs.jpg").exists()
    assert not (tmp_path / "evil.jpg").exists() and not (tmp_path.parent / "evil.jpg").exists()
    assert not list(datasets.dataset_dir("evil").glob(".staging-*"))


def test_symlink_member_refused(tmp_path, fer_sample):
    link = zipfile.ZipInfo("train/happy/link.jpg")
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    z = _zip(tmp_path / "link.zip", [(n, b) for n, b in _good(fer_sample).items()] + [(link, b"/etc/passwd")])
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        datasets.import_dataset(z, "links")
    assert datasets.list_datasets() == []


def test_zip_bomb_ratio_refused(tmp_path):
    z = _zip(tmp_path / "bomb.zip", [("train/happy/bomb.jpg", b"\0" * (64 * 2**20))])  # 64 MiB of zeros
    assert z.stat().st_size < 2**20
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="zip bomb"):
        safe_extract(z, target)
    assert list(target.iterdir()) == []


def test_uncompressed_size_and_member_limits(tmp_path, fer_sample):
    z = _zip(tmp_path / "many.zip", [(f"train/happy/{i}.jpg", b) for i, b in enumerate(fer_sample.values())])
    with pytest.raises(UnsafeArchive, match="members"):
        datasets.import_dataset(z, "many", limits=ImportLimits(max_members=10))
    with pytest.raises(UnsafeArchive, match="expands to"):
        datasets.import_dataset(z, "many", limits=ImportLimits(max_uncompressed_bytes=10_000))
    assert datasets.list_datasets() == []
    # within limits it imports
    assert len(datasets.import_dataset(z, "many").dataset.catalog) == len(fer_sample)


def test_lying_header_is_caught_while_writing(tmp_path, fer_sample):
    z = tmp_path / "liar.zip"
    data = b"A" * 100_000
    with zipfile.ZipFile(z, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("train/happy/a.jpg", data)
    raw = bytearray(z.read_bytes())
    # shrink the declared uncompressed size in the central directory (and local header) to 10 bytes
    for sig in (b"PK\x01\x02", b"PK\x03\x04"):
        i = raw.find(sig)
        off = 24 if sig == b"PK\x01\x02" else 22
        raw[i + off:i + off + 4] = (10).to_bytes(4, "little")
    z.write_bytes(bytes(raw))
    target = tmp_path / "out"
    target.mkdir()
    # zipfile stops at the declared size, so the CRC check catches it ("damaged"); a stream that ran past the
    # header would be "larger than its header says": either way a sentence naming the file, not zipfile's error
    with pytest.raises((UnsafeArchive, InvalidInput), match="train/happy/a.jpg"):
        safe_extract(z, target)
    written = [p for p in target.rglob("*") if p.is_file()]
    assert all(p.stat().st_size <= 10 for p in written)


def test_not_a_zip(tmp_path):
    p = tmp_path / "fake.zip"
    p.write_bytes(b"definitely not a zip")
    with pytest.raises(Exception, match="not a readable zip"):
        datasets.import_dataset(p, "fake")


def _many_mib_zip(path: Path, n: int, fer_sample=None) -> Path:
    """The shape of the issue-14 bomb: many members of exactly 1 MiB of zeros (each under the per-member check)."""
    entries = [(n_, b) for n_, b in _good(fer_sample).items()] if fer_sample else []
    return _zip(path, entries + [(f"train/happy/{i:04d}.jpg", b"\0" * 2**20) for i in range(n)])


def test_many_one_mib_members_refused_before_writing(tmp_path, fer_sample):
    z = _many_mib_zip(tmp_path / "mib.zip", 48, fer_sample)   # ~150 KiB that expands to 48 MiB
    assert z.stat().st_size < 2**20
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="zip bomb") as err:
        safe_extract(z, target)
    assert "expand" in err.value.message
    assert list(target.iterdir()) == []
    with pytest.raises(UnsafeArchive):
        datasets.import_dataset(z, "mib")
    assert datasets.list_datasets() == []
    assert not list(datasets.dataset_dir("mib").glob(".staging-*"))


def test_expansion_enforced_while_writing_when_headers_lie(tmp_path, monkeypatch):
    """Even when the header checks pass (headers can lie), no more than the budget is ever written."""
    from fer_core.sources import archive

    z = _many_mib_zip(tmp_path / "mib.zip", 48)
    monkeypatch.setattr(archive, "check_zip", lambda zf, limits: [(i, archive._member_path(i)) for i in zf.infolist()])
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UnsafeArchive, match="more than its headers declare"):
        safe_extract(z, target)
    written = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    assert written <= archive.expand_budget(z.stat().st_size) < 48 * 2**20


def test_real_fer2013_zip_passes_the_bomb_checks_and_the_size_cap_is_configurable(fer_zip):
    from fer_core.sources.archive import check_zip, expand_budget

    with zipfile.ZipFile(fer_zip) as zf:
        members = check_zip(zf)
        total = sum(i.file_size for i, _ in members)
    assert len(members) == 35_887
    assert total / fer_zip.stat().st_size < 1.0 and total < expand_budget(fer_zip.stat().st_size)
    # every member and the running total pass the ratio checks: only the archive-size cap refuses it
    with pytest.raises(UnsafeArchive, match=r"its size \(limit 0×\)"):
        datasets.import_dataset(fer_zip, "capped", limits=ImportLimits(max_total_ratio=0.4))
    assert datasets.list_datasets() == []
    assert not list(datasets.dataset_dir("capped").glob(".staging-*"))
