"""Kaggle downloads with per-call credentials, progress, resume, integrity check and atomic finish.

Credentials are never process-global: every call takes a :class:`KaggleCredentials` and builds its
own HTTP client (kagglesdk) with exactly those credentials. Keys are never printed or logged (the
credentials object masks them in ``repr``).

Downloads land in ``cache/downloads/<owner>/<slug>/v<version>/archive.zip``: bytes stream into
``archive.zip.part`` (kept across failures so the next attempt resumes with an HTTP Range request),
are checked against the size and the MD5 that the storage server sends (``x-goog-hash``), and only
then renamed to ``archive.zip``. Downloaded archives are kept: nothing downloaded is lost.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from fer_core.errors import (AuthError, ConnectionDropped, DiskFull, FerError, IntegrityError, InvalidInput,
                             NetworkError, NoCredentials, NotFound)
from fer_core.progress import CancelToken, ProgressFn, atomic_write_json, check_cancel, emit
from fer_core.store_paths import downloads_root

CHUNK = 1 << 20
CONNECT_TIMEOUT = 10
READ_TIMEOUT = 60
SETTINGS_URL = "https://www.kaggle.com/settings (API → Create New Token)"


@dataclass(frozen=True)
class KaggleCredentials:
    username: str = ""
    key: str = ""
    token: str = ""          # a KAGGLE_API_TOKEN (bearer) instead of username/key
    source: str = "typed"    # typed | env | kaggle.json | access_token

    def __repr__(self) -> str:  # never show the secret
        who = self.username or "(token)"
        return f"KaggleCredentials(user={who!r}, source={self.source!r}, secret=***)"

    __str__ = __repr__

    @property
    def valid(self) -> bool:
        return bool(self.token) or bool(self.username and self.key)

    def as_env(self) -> dict[str, str]:
        """Environment for a child process that should use exactly these credentials."""
        if self.token:
            return {"KAGGLE_API_TOKEN": self.token}
        return {"KAGGLE_USERNAME": self.username, "KAGGLE_KEY": self.key}


def kaggle_json_path() -> Path:
    base = os.environ.get("KAGGLE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".kaggle")
    return Path(base) / "kaggle.json"


def credentials_from_env(environ: dict | None = None) -> KaggleCredentials | None:
    env = os.environ if environ is None else environ
    token = env.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        if os.path.isfile(token):
            token = Path(token).read_text().strip()
        return KaggleCredentials(token=token, username=env.get("KAGGLE_USERNAME", ""), source="env")
    user, key = env.get("KAGGLE_USERNAME", "").strip(), env.get("KAGGLE_KEY", "").strip()
    if user and key:
        return KaggleCredentials(user, key, source="env")
    return None


def credentials_from_file(path: Path | None = None) -> KaggleCredentials | None:
    path = path or kaggle_json_path()
    try:
        data = json.loads(path.read_text())
        if data.get("username") and data.get("key"):
            return KaggleCredentials(str(data["username"]), str(data["key"]), source="kaggle.json")
    except (OSError, ValueError, AttributeError):
        return None
    tok = path.parent / "access_token"
    if tok.is_file() and tok.read_text().strip():
        return KaggleCredentials(token=tok.read_text().strip(), source="access_token")
    return None


def resolve_credentials(explicit: KaggleCredentials | None = None) -> KaggleCredentials:
    """Typed credentials win, then the environment, then ~/.kaggle/kaggle.json."""
    for cand in (explicit, credentials_from_env(), credentials_from_file()):
        if cand is not None and cand.valid:
            return cand
    raise NoCredentials(
        "No Kaggle credentials found.",
        "Type your Kaggle username and key on the Datasets page, or set KAGGLE_USERNAME and KAGGLE_KEY "
        f"(or KAGGLE_API_TOKEN), or put kaggle.json in {kaggle_json_path().parent}. Get a key at {SETTINGS_URL}.")


def save_kaggle_json(creds: KaggleCredentials, path: Path | None = None) -> Path:
    """Write kaggle.json with mode 0600 (created with that mode, never world-readable for a moment)."""
    if not (creds.username and creds.key):
        raise InvalidInput("Only a username and key can be saved to kaggle.json.",
                           "Type both, or keep using the token through KAGGLE_API_TOKEN.")
    path = path or kaggle_json_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"username": creds.username, "key": creds.key}, fh)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


# ---- HTTP -----------------------------------------------------------------------------------

def _dataset_client(creds: KaggleCredentials):
    from kagglesdk.datasets.services.dataset_api_service import DatasetApiClient
    from kagglesdk.kaggle_http_client import KaggleHttpClient

    class _PerCallAuthClient(KaggleHttpClient):
        """kagglesdk's client, but with exactly these credentials (never env or files)."""

        def _try_fill_auth(self):
            if creds.token:
                self._session.auth = KaggleHttpClient.BearerAuth(creds.token)
            else:
                self._session.auth = (creds.username, creds.key)
            self._signed_in = True

    import fer_core
    http = _PerCallAuthClient(user_agent=f"fer-curation-studio/{fer_core.__version__}")
    return DatasetApiClient(http), http


def parse_slug(slug: str) -> tuple[str, str]:
    parts = slug.strip().strip("/").split("/")
    if len(parts) != 2 or not all(parts):
        raise InvalidInput(f"'{slug}' is not a Kaggle dataset slug.", "Use the form owner/dataset, e.g. msambare/fer2013.")
    return parts[0], parts[1]


def _translate(exc: Exception, slug: str, creds: KaggleCredentials, stage: str) -> FerError:
    who = creds.username or "the token"
    if isinstance(exc, requests.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return AuthError(f"Kaggle rejected the credentials of {who} (HTTP 401).",
                             f"Check the username and key (or create a new token at {SETTINGS_URL}).")
        if code == 403:
            return AuthError(f"Kaggle refused access to '{slug}' for {who} (HTTP 403).",
                             "Open the dataset page on kaggle.com and accept its rules, or check the key's permissions.")
        if code == 404:
            return NotFound(f"Kaggle has no dataset '{slug}' (HTTP 404).",
                            "Check the slug (owner/dataset) on kaggle.com; private datasets need their owner's key.")
        if code == 429:
            return NetworkError("Kaggle is rate-limiting requests (HTTP 429).", "Wait a few minutes and try again.")
        return NetworkError(f"Kaggle answered HTTP {code} while {stage}.", "Try again later; if it persists, check status.kaggle.com.")
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return NetworkError(f"Cannot reach Kaggle while {stage} ({type(exc).__name__}).",
                            "Check the network connection (and proxy settings), then try again.")
    return FerError(f"Unexpected error while {stage}: {type(exc).__name__}: {exc}", "Try again; see the log for details.")


def current_version(slug: str, creds: KaggleCredentials) -> int:
    from kagglesdk.datasets.types.dataset_api_service import ApiGetDatasetRequest

    owner, name = parse_slug(slug)
    api, http = _dataset_client(creds)
    r = ApiGetDatasetRequest()
    r.owner_slug, r.dataset_slug = owner, name
    try:
        with http:
            ds = api.get_dataset(r)
    except Exception as exc:  # noqa: BLE001 - translated for the person
        raise _translate(exc, slug, creds, "looking up the dataset") from exc
    return int(ds.current_version_number or 1)


@dataclass
class Download:
    slug: str
    version: int
    path: Path
    bytes: int
    md5: str | None
    resumed_from: int
    reused: bool
    seconds: float


def download_dir(slug: str, version: int, cache=None) -> Path:
    owner, name = parse_slug(slug)
    return downloads_root(cache) / owner / name / f"v{version}"


def _md5_header(resp: requests.Response) -> str | None:
    for part in resp.headers.get("x-goog-hash", "").split(","):
        k, _, v = part.strip().partition("=")
        if k == "md5" and v:
            return v
    return None


def download_dataset(slug: str, creds: KaggleCredentials, progress: ProgressFn | None = None,
                     cancel: CancelToken | None = None, cache=None, retries: int = 5,
                     version: int | None = None) -> Download:
    """Download the dataset archive (resuming a partial file) and return where it is."""
    from fer_core import locks

    t0 = time.time()
    parse_slug(slug)
    version = version or current_version(slug, creds)
    ddir = download_dir(slug, version, cache)
    ddir.mkdir(parents=True, exist_ok=True)
    # One download of a slug's version at a time (two would write one .part file): a second one, e.g. the
    # same slug registered under another name, waits and then finds the archive already downloaded.
    with locks.hold(ddir / ".lock", slug, "download", progress=progress, cancel=cancel):
        return _download(slug, creds, version, ddir, progress, cancel, retries, t0)


def _download(slug: str, creds: KaggleCredentials, version: int, ddir: Path, progress: ProgressFn | None,
              cancel: CancelToken | None, retries: int, t0: float) -> Download:
    from kagglesdk.datasets.types.dataset_api_service import ApiDownloadDatasetRequest

    owner, name = parse_slug(slug)
    final, part, meta_path = ddir / "archive.zip", ddir / "archive.zip.part", ddir / "download.json"
    if final.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("bytes") == final.stat().st_size:
            emit(progress, "download", meta["bytes"], meta["bytes"], "B", message="already downloaded")
            return Download(slug, version, final, meta["bytes"], meta.get("md5"), 0, True, time.time() - t0)

    api, http = _dataset_client(creds)
    req = ApiDownloadDatasetRequest()
    req.owner_slug, req.dataset_slug, req.dataset_version_number = owner, name, version
    try:
        with http:
            resp = api.download_dataset(req)  # follows the redirect to the storage URL, streaming
    except Exception as exc:  # noqa: BLE001
        raise _translate(exc, slug, creds, "starting the download") from exc

    blob_url = resp.url
    total = int(resp.headers["Content-Length"]) if "Content-Length" in resp.headers else None
    expected_md5 = _md5_header(resp)
    ranges = resp.headers.get("Accept-Ranges", "").lower() == "bytes"
    have = part.stat().st_size if part.exists() else 0
    resumed_from = 0
    if have and ranges and total and have <= total:
        resumed_from = have
        resp.close()
        resp = None
    else:
        have = 0
    attempts = 0
    while True:
        try:
            if resp is None:
                resp = requests.get(blob_url, stream=True, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                                    headers={"Range": f"bytes={have}-"})
                if resp.status_code == 416 and total and have == total:
                    resp.close()
                    break
                resp.raise_for_status()
                if have and resp.status_code != 206:  # server ignored the range: start over
                    have = 0
            _stream(resp, part, have, total, progress, cancel)
            resp.close()
            break
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
            if resp is not None:
                resp.close()
            resp = None
            have = part.stat().st_size if part.exists() else 0
            attempts += 1
            if not (ranges and total) or attempts > retries:
                raise ConnectionDropped(
                    f"The connection dropped during the download of '{slug}' "
                    f"({have / 2**20:,.1f} of {(total or 0) / 2**20:,.1f} MiB received).",
                    "Run the download again: it resumes from where it stopped.") from exc
            time.sleep(min(2 ** attempts * 0.25, 5))
        except requests.HTTPError as exc:
            raise _translate(exc, slug, creds, "downloading") from exc
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DiskFull(f"The disk is full ({part.parent}); the partial download is kept.",
                               "Free some space and run the download again: it resumes.") from exc
            raise

    size = part.stat().st_size
    if total is not None and size > total:  # more than announced: the partial file cannot be trusted
        part.unlink()
        raise IntegrityError(f"The download of '{slug}' received {size:,} bytes, more than the {total:,} announced; "
                             "the partial file was deleted.", "Run the download again.")
    if total is not None and size != total:
        raise ConnectionDropped(f"The download of '{slug}' ended early ({size:,} of {total:,} bytes).",
                                "Run the download again: it resumes from where it stopped.")
    md5 = None
    if expected_md5:
        h = hashlib.md5()
        with open(part, "rb") as fh:
            for chunk in iter(lambda: fh.read(CHUNK), b""):
                h.update(chunk)
        md5 = base64.b64encode(h.digest()).decode()
        if md5 != expected_md5:
            part.unlink()
            raise IntegrityError(f"The downloaded archive of '{slug}' is corrupt (MD5 mismatch); it was deleted.",
                                 "Run the download again.")
    os.replace(part, final)
    atomic_write_json(meta_path, {"slug": slug, "version": version, "bytes": size, "md5": md5,
                                  "downloaded_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                  "resumed_from": resumed_from})
    return Download(slug, version, final, size, md5, resumed_from, False, time.time() - t0)


def _stream(resp: requests.Response, part: Path, have: int, total: int | None,
            progress: ProgressFn | None, cancel: CancelToken | None) -> None:
    mode = "ab" if have else "wb"
    done = have
    emit(progress, "download", done, total, "B")
    # an event every 0.1 s, and at least every 2% of the file: a fast (local) link still shows the bar move
    last, last_done = 0.0, done
    step = total / 50 if total else float("inf")
    with open(part, mode) as fh:
        for chunk in resp.iter_content(CHUNK):
            check_cancel(cancel)
            fh.write(chunk)
            done += len(chunk)
            now = time.monotonic()
            if now - last > 0.1 or done - last_done >= step:
                last, last_done = now, done
                emit(progress, "download", done, total, "B")
    emit(progress, "download", done, total, "B")
