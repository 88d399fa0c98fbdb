"""Shared fixtures: real FER2013 images, isolated cache dirs, the fake Kaggle server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from types import SimpleNamespace

# The suite runs one xdist worker more than the cores (below): TensorFlow and BLAS in every worker and in the
# processes it starts use one thread each, so three processes on two cores do not oversubscribe them (their thread
# pools spin while they wait). Set before anything imports numpy or TensorFlow; an exported value wins.
for _var in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FER_ZIP = (ROOT.parent / "shared" / "datasets" / "fer2013" / "archive.zip").resolve()
sys.path.insert(0, str(Path(__file__).resolve().parent))

FER_COUNTS = {"angry": 4953, "disgust": 547, "fear": 5121, "happy": 8989, "sad": 6077, "surprise": 4002,
              "neutral": 6198}
FER_USAGE = {"Training": 28709, "PublicTest": 3589, "PrivateTest": 3589}


IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _missing_data(what: str) -> None:
    """Without ../shared a test cannot run: in CI that is a failure (CI never goes green by skipping)."""
    if IN_CI:
        pytest.fail(f"{what} (CI=true: tests that need ../shared fail instead of skipping)", pytrace=False)
    pytest.skip(what)


# pytest-xdist hands out whole files (`--dist loadfile`) in this order (`--no-loadscope-reorder`, pytest.ini; xdist's
# own reorder, most tests first, left the long single-test files such as test_ab.py for the end, and one worker
# finished 110 s after the others). Longest first (FER_TEST_TIMELINE, summed per file), with the training files
# spaced out by ones that mostly wait (FER+ import and link, the fake Kaggle server) so that they do not all start at
# once; every file not listed keeps its place after these. Measured on clean clones (bench/RESULTS.md): 723, 730 and
# 780 s, the three workers ending within 25 s of each other, against 765-789 s in xdist's order.
LONGEST_FIRST = ("test_app_train.py", "test_crowd.py", "test_kaggle.py", "test_train.py", "test_ray.py", "test_ab.py",
                 "test_splits.py", "test_label_noise.py", "test_browser_curation.py", "test_app_curation.py",
                 "test_app_review_ergonomics.py", "test_browser_train.py", "test_browser_review.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda it: rank.get(it.path.name, len(rank)))    # stable: tests keep their order in a file
    if not FER_ZIP.exists() and not IN_CI:
        skip = pytest.mark.skip(reason=f"real FER2013 archive not found at {FER_ZIP} (../shared missing)")
        for item in items:
            if "needs_fer" in item.keywords or "fer_zip" in getattr(item, "fixturenames", ()):
                item.add_marker(skip)


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (pytest.ini): one worker more than this machine's cores (pytest.ini caps it at 4). The extra worker
    fills the time the others spend waiting on a browser, a child process or another worker's shared fixture; on
    2 cores 2 workers kept 1.56 cores busy (bench/RESULTS.md, the test suite). PYTEST_XDIST_AUTO_NUM_WORKERS wins."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    return len(os.sched_getaffinity(0)) + 1


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """FER_TEST_TIMELINE=FILE: each test's worker, start and end (epoch seconds) appended as a line of JSON, to see
    where the parallel run's wall time goes (idle workers, a long last file)."""
    out = os.environ.get("FER_TEST_TIMELINE")
    t0 = time.time()
    try:
        return (yield)
    finally:
        if out:
            with open(out, "a") as f:
                f.write(json.dumps({"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "test": item.nodeid,
                                    "start": t0, "end": time.time()}) + "\n")


@pytest.fixture(autouse=True)
def _isolate_env(tmp_path, monkeypatch):
    """No test reads the developer's ~/.kaggle or real Kaggle env; each test gets its own cache."""
    for k in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_API_ENVIRONMENT", "HTTP_PROXY",
              "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(k, raising=False)
    kdir = tmp_path / "kaggle-config"
    kdir.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(kdir))
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    yield


def shared_build(tmp_path_factory, key: str, build) -> tuple[Path, dict]:
    """A session fixture's folder built once per test run, also across pytest-xdist workers: the first worker that
    needs it runs ``build(folder) -> dict`` under a file lock, the others wait for it and reuse folder and dict
    (the dict is kept as JSON beside it). A build that raises marks nothing done: the next worker builds again
    (and fails the same way, in its own test)."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent                      # every worker's basetemp is a child of the run's
    folder, info = base / f"shared-{key}", base / f"shared-{key}.json"
    with FileLock(str(base / f"shared-{key}.lock")):
        if not info.exists():
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir()
            out = build(folder) or {}
            tmp = info.with_suffix(".tmp")
            tmp.write_text(json.dumps(out))
            tmp.replace(info)
    return folder, json.loads(info.read_text())


@pytest.fixture(scope="session")
def fer_zip() -> Path:
    if not FER_ZIP.exists():
        _missing_data(f"real FER2013 archive not found at {FER_ZIP}")
    return FER_ZIP


@pytest.fixture(scope="session")
def fer_members(fer_zip) -> list[str]:
    with zipfile.ZipFile(fer_zip) as zf:
        return sorted(n for n in zf.namelist() if n.endswith(".jpg"))


def read_member(fer_zip: Path, name: str) -> bytes:
    with zipfile.ZipFile(fer_zip) as zf:
        return zf.read(name)


@pytest.fixture(scope="session")
def fer_sample(fer_zip, fer_members):
    """A deterministic stratified sample of real FER2013 files: {member name: bytes} (~40 per label×split dir)."""
    rng = np.random.default_rng(0)
    by_dir: dict[str, list[str]] = {}
    for n in fer_members:
        by_dir.setdefault(n.rsplit("/", 1)[0], []).append(n)
    pick = []
    for d, names in sorted(by_dir.items()):
        k = min(len(names), 40 if d.startswith("train") else 20)
        pick += list(rng.choice(names, size=k, replace=False))
    with zipfile.ZipFile(fer_zip) as zf:
        return {n: zf.read(n) for n in sorted(pick)}


def decode_gray(data: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)


@pytest.fixture
def fake_kaggle(fer_zip, monkeypatch):
    from fake_kaggle import FakeKaggle

    with FakeKaggle({"msambare/fer2013": fer_zip}) as fk:
        for k, v in fk.env(with_creds=False).items():
            monkeypatch.setenv(k, v)
        yield fk


@pytest.fixture(scope="session")
def fer2013_store(fer_zip, tmp_path_factory):
    """The full FER2013 downloaded through the fake Kaggle server into a session cache (shared, read-only):
    (cache, result) where result has ``dataset`` (as loaded from the cache) and ``n_rejected``."""
    def build(folder: Path) -> dict:
        from fake_kaggle import FakeKaggle

        saved = {k: os.environ.get(k) for k in ("KAGGLE_API_ENVIRONMENT", "HTTP_PROXY", "http_proxy", "NO_PROXY",
                                                "no_proxy")}
        with FakeKaggle({"msambare/fer2013": fer_zip}) as fk:
            os.environ.update(fk.env(with_creds=False))
            try:
                from fer_core import acquire
                from fer_core.sources.kaggle import KaggleCredentials

                res = acquire.download_and_import("fer2013", creds=KaggleCredentials(fk.username, fk.key),
                                                  cache=folder / "cache")
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        return {"n_rejected": res.n_rejected}

    from fer_core import datasets

    folder, info = shared_build(tmp_path_factory, "fer2013", build)
    cache = folder / "cache"
    return cache, SimpleNamespace(dataset=datasets.load("fer2013", cache), n_rejected=info["n_rejected"])


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def zip_tree(files: dict[str, bytes], path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(rel, data)
    return path


def import_and_scan(tmp_path, files: dict[str, bytes], name: str, scan: bool = True, **scan_kw):
    """Import ``files`` (rel path → bytes) as dataset ``name`` and scan it; returns the Dataset."""
    from fer_core import datasets, store

    src = write_tree(tmp_path / f"src-{name}", files)
    ds = datasets.import_dataset(src, name).dataset
    if scan:
        store.scan(name, workers=scan_kw.pop("workers", 1), **scan_kw)
    return ds


def encode(img, ext: str = ".png", quality: int = 95) -> bytes:
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else []
    ok, buf = cv2.imencode(ext, img, params)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="session")
def fer2013_scanned(fer2013_store, tmp_path_factory):
    """The session FER2013 store with quality + duplicate signals computed (in place, once per run)."""
    cache, res = fer2013_store

    def build(folder: Path) -> dict:
        from fer_core import datasets, store
        from fer_core.train import data

        store.scan("fer2013", cache=cache)
        data.pixels(datasets.load("fer2013", cache))   # the training pixel cache, shared (hard links) by workspaces
        return {}

    shared_build(tmp_path_factory, "fer2013-scanned", build)
    return cache, res


@pytest.fixture
def fer2013_workspace(fer2013_scanned, tmp_path, monkeypatch):
    """A private copy (hard links, instant) of the downloaded + scanned FER2013 store; FER_CACHE_DIR points at it."""
    import subprocess

    cache, _ = fer2013_scanned
    mine = tmp_path / "ws-cache"
    (mine / "datasets").mkdir(parents=True)
    subprocess.run(["cp", "-al", str(cache / "datasets" / "fer2013"), str(mine / "datasets" / "fer2013")], check=True)
    for lk in (mine / "datasets" / "fer2013").glob(".lock*"):  # a hard-linked lock would be shared by every copy
        lk.unlink()
    for f in (mine / "datasets" / "fer2013").glob("review.sqlite*"):
        f.unlink()
    monkeypatch.setenv("FER_CACHE_DIR", str(mine))
    return mine


def synthetic_nonfaces(fer_sample) -> dict[str, np.ndarray]:
    """Non-faces built here: text on a flat background, a blank frame, a random texture, and a real face
    shrunk into the corner of a large canvas."""
    import cv2

    out = {}
    t = np.full((48, 48), 200, np.uint8)
    cv2.putText(t, "Sorry,", (1, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 30, 1)
    cv2.putText(t, "image", (1, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 30, 1)
    cv2.putText(t, "moved", (1, 44), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 30, 1)
    out["text"] = t
    out["blank"] = np.full((48, 48), 128, np.uint8)
    out["texture"] = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    face = decode_gray(list(fer_sample.values())[5])
    canvas = np.full((192, 192), int(face.mean()), np.uint8)
    canvas[4:52, 4:52] = face
    out["small_face"] = canvas
    return out


@pytest.fixture(scope="session")
def faces_store(fer_sample, tmp_path_factory):
    """A real FER2013 subset plus planted non-faces and a re-cropped, relabelled cross-split copy, with every
    signal (quality, duplicates, faces, embeddings) computed. Session-wide; tests use copies (faces_ws)."""
    def build(cache: Path) -> dict:
        import cv2

        from fer_core import datasets, store

        items = list(fer_sample.items())
        files = dict(items[::2])                                   # 210 real images
        for kind, img in synthetic_nonfaces(fer_sample).items():
            files[f"train/neutral/Training_7{len(files):07d}_{kind}.png"] = encode(img)
        test_name, test_bytes = next((n, b) for n, b in items[::2] if "PrivateTest" in n and "/happy/" in n)
        g = decode_gray(test_bytes)
        recrop = cv2.resize(g[3:-3, 2:-4], (48, 48), interpolation=cv2.INTER_LINEAR)
        recrop = np.clip((recrop.astype(np.float32) - 128) * 0.85 + 140, 0, 255).astype(np.uint8)
        files["train/sad/Training_79999999.jpg"] = encode(recrop, ".jpg", 80)   # same photo, other label, in train
        src = write_tree(cache / "src", files)
        old = os.environ.get("FER_CACHE_DIR")
        os.environ["FER_CACHE_DIR"] = str(cache)
        try:
            datasets.import_dataset(src, "faces")
            store.scan("faces", ["quality", "duplicates", "faces", "embeddings"], workers=2)
        finally:
            if old is None:
                os.environ.pop("FER_CACHE_DIR", None)
            else:
                os.environ["FER_CACHE_DIR"] = old
        return {"test_original": test_name, "recrop": "train/sad/Training_79999999.jpg"}

    return shared_build(tmp_path_factory, "faces", build)


@pytest.fixture
def faces_ws(faces_store, tmp_path, monkeypatch):
    import subprocess

    cache, info = faces_store
    mine = tmp_path / "faces-ws"
    (mine / "datasets").mkdir(parents=True)
    subprocess.run(["cp", "-al", str(cache / "datasets" / "faces"), str(mine / "datasets" / "faces")], check=True)
    for lk in (mine / "datasets" / "faces").glob(".lock*"):  # a hard-linked lock would be shared by every copy
        lk.unlink()
    for f in (mine / "datasets" / "faces").glob("review.sqlite*"):
        f.unlink()
    if (cache / "models").exists():
        subprocess.run(["cp", "-al", str(cache / "models"), str(mine / "models")], check=True)
    monkeypatch.setenv("FER_CACHE_DIR", str(mine))
    return mine, info


# ---- label errors: real FER2013 training images with planted noise ----------------------------------------

@pytest.fixture(scope="session")
def noisy_store(fer_zip, fer_members, tmp_path_factory):
    """3,500 real FER2013 training images (+ small val/test) with 5% of the labels flipped on purpose."""
    def build(cache: Path) -> dict:
        from fer_core import datasets, store

        rng = np.random.default_rng(42)
        train = [n for n in fer_members if n.startswith("train/")]
        test = [n for n in fer_members if n.startswith("test/")]
        pick = sorted(rng.choice(train, 3500, replace=False))
        labels = sorted({n.split("/")[1] for n in train})
        flip = set(rng.choice(pick, int(0.05 * len(pick)), replace=False))
        files = {}
        with zipfile.ZipFile(fer_zip) as zf:
            for n in pick:
                lab = n.split("/")[1]
                if n in flip:
                    lab = labels[(labels.index(lab) + int(rng.integers(1, len(labels)))) % len(labels)]
                files[f"train/{lab}/{n.rsplit('/', 1)[1]}"] = zf.read(n)
            for n in rng.choice(test, 300, replace=False):
                files[n] = zf.read(n)
        old = os.environ.get("FER_CACHE_DIR")
        os.environ["FER_CACHE_DIR"] = str(cache)
        try:
            src = write_tree(cache.parent / f"{cache.name}-src", files)
            datasets.import_dataset(src, "noisy")
            store.scan("noisy", workers=2)
        finally:
            if old is None:
                os.environ.pop("FER_CACHE_DIR", None)
            else:
                os.environ["FER_CACHE_DIR"] = old
        return {"flipped": sorted(n.rsplit("/", 1)[1] for n in flip)}

    cache, info = shared_build(tmp_path_factory, "noisy", build)
    return cache, set(info["flipped"])


@pytest.fixture(scope="session")
def noisy_labelled(noisy_store, tmp_path_factory):
    """The label signals of the planted-noise dataset (computed once per run, through the CLI, in place)."""
    cache, flipped = noisy_store

    def build(_folder: Path) -> dict:
        t = time.time()
        out = subprocess.run([sys.executable, "-m", "fer_core", "--quiet", "--cache", str(cache), "labels", "noisy",
                              "--folds", "3", "--epochs", "6"], capture_output=True, text=True,
                             env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert out.returncode == 0, out.stderr[-3000:]
        return {"stdout": out.stdout, "seconds": time.time() - t}

    _, info = shared_build(tmp_path_factory, "noisy-labelled", build)
    return cache, flipped, info["stdout"], info["seconds"]


@pytest.fixture
def noisy_workspace(noisy_labelled, tmp_path, monkeypatch):
    """A private copy of the planted-noise dataset with its label signals; FER_CACHE_DIR points at it (tests
    that write overrides or exports must not touch the shared session store)."""
    import subprocess

    cache = noisy_labelled[0]
    mine = tmp_path / "ws"
    (mine / "datasets").mkdir(parents=True)
    subprocess.run(["cp", "-a", str(cache / "datasets" / "noisy"), str(mine / "datasets" / "noisy")], check=True)
    monkeypatch.setenv("FER_CACHE_DIR", str(mine))
    return mine


def cli_paused_after(tmp_path: Path, argv: list[str], target: str, after: int, first_arg_has: str = ""):
    """Start ``python -m fer_core ARGV`` in its own process group, with ``target`` ("module:function") wrapped so
    that after its ``after``-th call (counting only calls whose first argument's text contains ``first_arg_has``)
    the process writes a marker and pauses for good. Returns the Popen once the marker exists: the child is then
    certainly mid-work (it cannot finish first), ready to be killed."""
    import subprocess

    marker = tmp_path / f"paused-{time.time_ns()}"
    mod, fn = target.split(":")
    code = (
        "import importlib, signal, sys\n"
        f"m = importlib.import_module({mod!r}); real = getattr(m, {fn!r}); n = [0]\n"
        "def wrapped(*a, **kw):\n"
        "    out = real(*a, **kw)\n"
        f"    n[0] += {first_arg_has!r} in str(a[0] if a else '')\n"
        f"    if n[0] == {after}:\n"
        f"        open({str(marker)!r}, 'w').close()\n"
        "        while True: signal.pause()\n"
        "    return out\n"
        f"setattr(m, {fn!r}, wrapped)\n"
        "from fer_core.cli import main\n"
        f"sys.exit(main({argv!r}))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, start_new_session=True)
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None, f"the command ended (rc {proc.returncode}) before pausing"
        assert time.time() < deadline, "the command did not reach the pause point in 300 s"
        time.sleep(0.01)
    return proc


def app_page(path: str, timeout: float = 120):
    """A fresh browser session in AppTest (a new tab): open the app, then go to ``path`` as the menu does."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.run()
    at.switch_page(path)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def live_pid():
    """A process that stays alive until the test ends it (stands for a job's or run's process)."""
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    yield p
    p.stdin.close()
    p.wait(10)


CK_ZIP = (ROOT.parent / "shared" / "datasets" / "ckplus" / "archive.zip").resolve()


@pytest.fixture(scope="session")
def ckplus_scanned(tmp_path_factory) -> Path:
    """The real CK+ imported and scanned (quality + duplicates) into a session cache, shared read-only (tests that
    write copy it)."""
    if not CK_ZIP.exists():
        _missing_data(f"real CK+ archive not found at {CK_ZIP}")

    def build(cache: Path) -> dict:
        from fer_core import datasets, store

        datasets.import_dataset(CK_ZIP, "ckplus", cache=cache)
        store.scan("ckplus", workers=1, cache=cache)
        return {}

    return shared_build(tmp_path_factory, "ckplus", build)[0]


@pytest.fixture(scope="session")
def ckplus_embedded(ckplus_scanned, tmp_path_factory) -> Path:
    """The session's real CK+ with its face signals and SFace embeddings too (~1 min on 2 cores), in its own cache
    (shared read-only; tests that write copy it)."""
    def build(folder: Path) -> dict:
        from fer_core import store

        shutil.copytree(ckplus_scanned, folder / "cache", symlinks=True)
        store.scan("ckplus", signals=("faces", "embeddings"), workers=1, cache=folder / "cache")
        return {}

    return shared_build(tmp_path_factory, "ckplus-embedded", build)[0] / "cache"
