"""Imports cannot expose the server's files and never end in a traceback (issue 14, items 3, 4 and 7).

Server paths are confined to import folders; a folder import copies only images and label files, never
follows links and keeps to the size limits; errors and rejected reasons never carry a file's text; a
broken link, a huge CSV field and a non-UTF-8 byte become clear reasons. Real FER2013 images throughout.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import decode_gray, write_tree
from fer_core import cli, datasets
from fer_core.config import ImportLimits, import_roots, is_loopback, path_import_allowed
from fer_core.errors import InvalidInput

SECRET = "db_password=hunter2-do-not-show"


def _small(fer_sample, n=24) -> dict[str, bytes]:
    """``n`` real images spread over every split × label folder."""
    return dict(list(fer_sample.items())[::9][:n])


def _csv_text(fer_sample, n=30) -> str:
    ids = {"angry": 0, "disgust": 1, "fear": 2, "happy": 3, "sad": 4, "surprise": 5, "neutral": 6}
    lines = ["emotion,pixels,Usage"]
    for name, data in list(fer_sample.items())[:n]:
        px = decode_gray(data)
        lines.append(f"{ids[name.split('/')[1]]},{' '.join(map(str, px.ravel()))},{Path(name).name.split('_')[0]}")
    return "\n".join(lines) + "\n"


def _store_files(name: str) -> list[Path]:
    return [p for p in datasets.load(name).root.rglob("*") if p.is_file()]


# ---- item 3: what a folder import copies ------------------------------------------------------

def test_folder_import_copies_only_images_and_labels_and_follows_no_link(tmp_path, fer_sample):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(list(fer_sample.values())[-1])   # a real image, outside the folder
    write_tree(outside / "elsewhere" / "happy", {"x.jpg": list(fer_sample.values())[-2]})
    src = write_tree(tmp_path / "src", _small(fer_sample))
    key = src / "id_rsa"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n" + SECRET)
    key.chmod(0o600)
    (src / "train" / "notes.bin").write_bytes(SECRET.encode())
    (src / "config.yaml").write_text(SECRET)
    (src / ".env").write_text(SECRET)
    (src / "train" / "happy").mkdir(parents=True, exist_ok=True)
    os.symlink(outside / "secret.jpg", src / "train" / "happy" / "Training_99999999.jpg")
    os.symlink(outside / "elsewhere", src / "train" / "linked")
    res = datasets.import_dataset(src, "copy-only")
    assert len(res.dataset.catalog) == 24
    stored = _store_files("copy-only")
    assert {p.name for p in stored}.isdisjoint({"id_rsa", "notes.bin", "config.yaml", ".env", "x.jpg",
                                                 "Training_99999999.jpg"})
    assert not any(SECRET.encode() in p.read_bytes() for p in stored)
    assert not any(p.read_bytes() == (outside / "secret.jpg").read_bytes() for p in stored)
    rej = res.dataset.rejected.set_index("path")["reason"]
    assert "not an image or label file" in rej["id_rsa"] and "not copied" in rej["id_rsa"]
    assert "not copied" in rej["train/notes.bin"]
    assert rej["train/happy/Training_99999999.jpg"].startswith("symbolic link")
    assert rej["train/linked"].startswith("symbolic link")
    assert "config.yaml" not in rej and ".env" not in rej   # metadata no reader needs: left out quietly
    assert not rej.str.contains("hunter2").any()


def test_folder_with_a_broken_link_imports_and_lists_it(tmp_path, fer_sample):
    src = write_tree(tmp_path / "src", _small(fer_sample))
    (src / "train" / "angry").mkdir(parents=True, exist_ok=True)
    os.symlink(tmp_path / "gone.jpg", src / "train" / "angry" / "Training_90000000.jpg")
    res = datasets.import_dataset(src, "broken-link")
    assert len(res.dataset.catalog) == 24
    assert res.dataset.rejected.set_index("path")["reason"]["train/angry/Training_90000000.jpg"] \
        == "symbolic link: not followed, not copied"


def test_folder_import_keeps_the_label_files_a_reader_needs(tmp_path, fer_sample):
    imgs = list(fer_sample.values())
    src = write_tree(tmp_path / "raf", {"DATASET/train/1/train_00001_aligned.jpg": imgs[0],
                                        "DATASET/train/6/train_00002_aligned.jpg": imgs[1],
                                        "DATASET/test/4/test_0001_aligned.jpg": imgs[2],
                                        "DATASET/train/unsorted/train_00003_aligned.jpg": imgs[3],
                                        "train_labels.csv": b"image,label\ntrain_00003_aligned.jpg,4\n"})
    res = datasets.import_dataset(src, "raf", spec="rafdb")
    cat = res.dataset.catalog.set_index("path")
    assert cat.loc["DATASET/train/unsorted/train_00003_aligned.jpg", "label"] == "happy"   # from the CSV
    assert (res.dataset.images / "train_labels.csv").exists()
    # a fer2013.csv in a folder is found and read as well
    (tmp_path / "csvdir").mkdir()
    (tmp_path / "csvdir" / "fer2013.csv").write_text(_csv_text(fer_sample))
    assert len(datasets.import_dataset(tmp_path / "csvdir", "csvdir").dataset.catalog) == 30


def test_folder_import_keeps_to_the_size_limits(tmp_path, fer_sample):
    src = write_tree(tmp_path / "src", _small(fer_sample, 40))
    with pytest.raises(InvalidInput, match="more than 10 files") as ei:
        datasets.import_dataset(src, "big", limits=ImportLimits(max_members=10))
    assert "--max-members" in ei.value.hint
    with pytest.raises(InvalidInput, match="GiB") as ei:
        datasets.import_dataset(src, "big", limits=ImportLimits(max_uncompressed_bytes=20_000))
    assert "--max-gib" in ei.value.hint
    assert datasets.list_datasets() == []
    assert len(datasets.import_dataset(src, "big").dataset.catalog) == 40


# ---- item 3: confinement of server paths -------------------------------------------------------

def test_server_paths_are_confined_to_the_import_folders(tmp_path, fer_sample, monkeypatch):
    root = tmp_path / "cache" / "import"
    extra = tmp_path / "shared-data"
    monkeypatch.setenv("FER_IMPORT_ROOTS", os.pathsep.join([str(extra), str(tmp_path / "nowhere")]))
    roots = import_roots()
    assert roots[0] == root.resolve() and root.is_dir() and extra.resolve() in roots
    inside = write_tree(root / "mine", _small(fer_sample, 12))
    in_extra = write_tree(extra / "theirs", _small(fer_sample, 8))
    outside = write_tree(tmp_path / "home" / "user", {"train/happy/Training_1.jpg": list(fer_sample.values())[0]})
    (tmp_path / "home" / "user" / "id_rsa").write_text(SECRET)
    os.symlink(outside, root / "escape")
    assert len(datasets.import_dataset(inside, "inside", allowed_roots=roots).dataset.catalog) == 12
    assert len(datasets.import_dataset(in_extra, "extra", allowed_roots=roots).dataset.catalog) == 8

    def refused(path) -> str:
        with pytest.raises(InvalidInput) as ei:
            datasets.import_dataset(path, "nope", allowed_roots=roots)
        return str(ei.value).replace(str(path), "<path>")

    msgs = {refused(p) for p in (outside, outside / "id_rsa", tmp_path / "home" / "missing.zip",
                                 root / "missing", root / "escape", root / ".." / ".." / "home" / "user",
                                 "/etc/passwd")}
    assert len(msgs) == 1, msgs          # one message: it does not tell whether the path exists
    assert "not a file or folder inside the import folders" in msgs.pop()
    assert datasets.list_datasets() == ["extra", "inside"]
    # the CLI is the operator: unrestricted unless told (the app's jobs pass --within)
    assert cli.main(["--quiet", "import", str(outside), "--name", "operator"]) == 0
    assert cli.main(["--quiet", "import", str(outside), "--name", "confined", "--within", str(root)]) == 1
    assert datasets.list_datasets() == ["extra", "inside", "operator"]


def test_path_import_is_offered_on_loopback_only_unless_enabled(monkeypatch):
    monkeypatch.delenv("FER_ALLOW_PATH_IMPORT", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert not any(is_loopback(a) for a in ("0.0.0.0", "", None, "192.168.1.5", "::", "example.org"))
    assert path_import_allowed("127.0.0.1") and not path_import_allowed("0.0.0.0")
    monkeypatch.setenv("FER_ALLOW_PATH_IMPORT", "1")
    assert path_import_allowed("0.0.0.0")


# ---- item 3: no file contents in errors -----------------------------------------------------------

def test_csv_errors_never_echo_the_file(tmp_path, capsys):
    p = tmp_path / "settings.csv"
    p.write_text(f"{SECRET},user=admin\nrow,2\n")
    with pytest.raises(InvalidInput) as ei:
        datasets.import_dataset(p, "leak")
    text = str(ei.value)
    assert "no 'emotion' column" in text and "emotion, pixels and Usage" in text
    assert "hunter2" not in text and "db_password" not in text and "admin" not in text
    # the CLI (what a job's log holds) says the same, without the text either
    assert cli.main(["--quiet", "import", str(p), "--name", "leak"]) == 1
    err = capsys.readouterr()
    assert "no 'emotion' column" in err.err and "hunter2" not in err.err + err.out


def test_bad_rows_of_a_csv_with_text_never_echo_it(tmp_path, fer_sample):
    good = " ".join(["7"] * 2304)
    p = tmp_path / "fer2013.csv"
    p.write_text(_csv_text(fer_sample) + f"{SECRET},{good},Training\n3,{good},{SECRET}\n3,{SECRET} {good},Training\n")
    res = datasets.import_dataset(p, "rows")
    reasons = res.dataset.rejected["reason"].tolist()
    assert len(reasons) == 3 and not any("hunter2" in r for r in reasons)
    assert not res.dataset.rejected["label_orig"].str.contains("hunter2").any()
    # too many bad rows: the error lists reasons, not text
    p.write_text(_csv_text(fer_sample, 1) + "\n".join([f"{SECRET},{good},Training"] * 3) + "\n")
    with pytest.raises(InvalidInput, match="3 bad rows") as ei:
        datasets.import_dataset(p, "rows2")
    assert "hunter2" not in str(ei.value)


# ---- item 4 / 7: clear reasons instead of tracebacks ------------------------------------------------

def test_csv_with_a_huge_field_reports_the_line(tmp_path, fer_sample):
    p = tmp_path / "fer2013.csv"
    p.write_text(_csv_text(fer_sample) + "3," + "7 " * 2_500_000 + ",Training\n")   # one 5 MB field
    res = datasets.import_dataset(p, "huge")
    assert len(res.dataset.catalog) == 30
    assert res.dataset.rejected["reason"].tolist() == ["line 32: a field is too long"]
    q = tmp_path / "header.csv"
    q.write_text("x" * 5_000_000 + "\n")
    with pytest.raises(InvalidInput, match="not a fer2013 CSV"):
        datasets.import_dataset(q, "huge2")


def test_csv_with_a_latin1_byte_reports_the_line(tmp_path, fer_sample):
    p = tmp_path / "fer2013.csv"
    text = _csv_text(fer_sample)
    p.write_bytes(text.encode() + b"3," + b"7 " * 2304 + b",Priv\xe9Test\n")
    res = datasets.import_dataset(p, "latin")
    assert len(res.dataset.catalog) == 30
    assert res.dataset.rejected["reason"].tolist() == ["line 32, column row: bytes that are not UTF-8 text "
                                                       "(expected plain ASCII)"]
    # a UTF-8 byte-order mark is fine
    p.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert len(datasets.import_dataset(p, "bom").dataset.catalog) == 30


def test_label_csv_with_a_huge_field_is_listed_not_a_traceback(tmp_path, fer_sample):
    imgs = list(fer_sample.values())
    src = write_tree(tmp_path / "raf", {"DATASET/train/1/train_00001_aligned.jpg": imgs[0],
                                        "DATASET/test/4/test_0001_aligned.jpg": imgs[1],
                                        "train_labels.csv": b"image,label\n" + b"x" * 300_000 + b",1\n"})
    res = datasets.import_dataset(src, "raf-huge", spec="rafdb")
    assert len(res.dataset.catalog) == 2
    assert res.dataset.rejected.set_index("path")["reason"]["train_labels.csv"] \
        == "label file not read (a field is too long)"


# ---- item 4 of issue 14: how the app is served ------------------------------------------------------

def test_app_binds_loopback_and_docker_runs_unprivileged():
    import tomllib

    from conftest import ROOT

    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert is_loopback(cfg["server"]["address"])
    lines = [ln.strip() for ln in (ROOT / "Dockerfile").read_text().splitlines()]
    code = [ln for ln in lines if ln and not ln.startswith("#")]
    users = [i for i, ln in enumerate(code) if ln.startswith("USER ")]
    cmd = next(i for i, ln in enumerate(code) if ln.startswith("CMD "))
    assert users and users[-1] < cmd and code[users[-1]].split()[1] not in ("root", "0")
    assert any("useradd" in ln for ln in code) and any("chown" in ln and "/app/cache" in ln for ln in code)
    assert not any("FER_ALLOW_PATH_IMPORT" in ln for ln in code)
    comments = " ".join(ln for ln in lines if ln.startswith("#")).lower()
    assert "0.0.0.0" in comments and "authenticat" in comments and "proxy" in comments
