"""A fake Kaggle API + blob server on 127.0.0.1 for end-to-end download tests.

Clients reach it as an HTTP proxy: ``KAGGLE_API_ENVIRONMENT=LOCALHOST`` makes kagglesdk call
``http://localhost/api/v1/...`` and ``HTTP_PROXY=http://127.0.0.1:<port>`` routes that here.
It implements what the download path uses: GetDataset (JSON with currentVersionNumber),
DownloadDataset (302 to a blob URL), a Range-capable blob endpoint with ``x-goog-hash`` md5, 401
without valid auth and 404 JSON for unknown datasets. Knobs let a test drop the connection
mid-download or corrupt the bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse


class FakeKaggle:
    def __init__(self, datasets: dict[str, Path], username: str = "tester", key: str = "s3cret-key",
                 token: str = "KGAT_test_token", version: int = 3, send_md5: bool = True):
        self.datasets = {k: Path(v) for k, v in datasets.items()}
        self.username, self.key, self.token, self.version = username, key, token, version
        self.send_md5 = send_md5
        self.drop_after: int | None = None   # close the connection after this many body bytes...
        self.drops_left = 0                 # ...for this many blob responses
        self.corrupt = False                # flip a byte in served blobs
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path, Range header)
        self._md5: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle
    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @property
    def proxy(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, with_creds: bool = True) -> dict[str, str]:
        env = {"KAGGLE_API_ENVIRONMENT": "LOCALHOST", "HTTP_PROXY": self.proxy, "http_proxy": self.proxy,
               "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
        if with_creds:
            env.update({"KAGGLE_USERNAME": self.username, "KAGGLE_KEY": self.key})
        return env

    def md5(self, slug: str) -> str:
        if slug not in self._md5:
            h = hashlib.md5()
            with open(self.datasets[slug], "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            self._md5[slug] = base64.b64encode(h.digest()).decode()
        return self._md5[slug]

    # -- HTTP
    def _handler(self):
        fake = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _json(self, code: int, obj: dict):
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self) -> bool:
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Bearer "):
                    return auth[7:] == fake.token
                if auth.startswith("Basic "):
                    try:
                        user, _, key = base64.b64decode(auth[6:]).decode().partition(":")
                    except Exception:  # noqa: BLE001
                        return False
                    return (user, key) == (fake.username, fake.key)
                return False

            def _slug(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                return f"{body.get('ownerSlug')}/{body.get('datasetSlug')}", body

            def do_POST(self):
                path = urlparse(self.path).path
                fake.requests.append(("POST", path, None))
                slug, body = self._slug()
                if not self._authorized():
                    return self._json(401, {"code": 401, "message": "Unauthenticated"})
                if slug not in fake.datasets:
                    return self._json(404, {"code": 404, "message": f"Dataset {slug} not found"})
                if path.endswith("/datasets.DatasetApiService/GetDataset"):
                    return self._json(200, {"ref": slug, "title": slug, "currentVersionNumber": fake.version,
                                            "totalBytes": os.path.getsize(fake.datasets[slug])})
                if path.endswith("/datasets.DatasetApiService/DownloadDataset"):
                    self.send_response(302)
                    self.send_header("Location", f"http://storage.localhost/blobs/{slug}/archive.zip?v={fake.version}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                return self._json(404, {"code": 404, "message": f"No such method {path}"})

            def do_GET(self):
                u = urlparse(self.path)
                rng = self.headers.get("Range")
                fake.requests.append(("GET", u.path, rng))
                if not u.path.startswith("/blobs/"):
                    return self._json(404, {"code": 404, "message": "not found"})
                slug = u.path[len("/blobs/"):].rsplit("/", 1)[0]
                if slug not in fake.datasets:
                    return self._json(404, {"code": 404, "message": "no blob"})
                fpath = fake.datasets[slug]
                size = os.path.getsize(fpath)
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[6:].split("-")[0] or 0)
                    if start >= size:
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{size}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
                else:
                    self.send_response(200)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(size - start))
                if fake.send_md5:
                    self.send_header("x-goog-hash", f"crc32c=AAAAAA==,md5={fake.md5(slug)}")
                self.end_headers()
                limit = None
                if fake.drops_left > 0 and fake.drop_after is not None:
                    fake.drops_left -= 1
                    limit = fake.drop_after
                sent = 0
                with open(fpath, "rb") as fh:
                    fh.seek(start)
                    while True:
                        chunk = fh.read(256 * 1024)
                        if not chunk:
                            break
                        if fake.corrupt and sent == 0:
                            chunk = bytes([chunk[0] ^ 0xFF]) + chunk[1:]
                        if limit is not None and sent + len(chunk) > limit:
                            self.wfile.write(chunk[: max(0, limit - sent)])
                            self.wfile.flush()
                            self.close_connection = True
                            try:
                                self.connection.shutdown(2)
                            except OSError:
                                pass
                            return
                        try:
                            self.wfile.write(chunk)
                        except (BrokenPipeError, ConnectionResetError):
                            return
                        sent += len(chunk)

        return H


def main():  # run standalone: python tests/fake_kaggle.py ZIP [PORT]
    import sys
    import time

    zip_path = Path(sys.argv[1])
    fk = FakeKaggle({"msambare/fer2013": zip_path})
    if len(sys.argv) > 2:
        fk.server.server_close()
        fk.server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2])), fk._handler())
        fk.port = int(sys.argv[2])
        fk.thread = threading.Thread(target=fk.server.serve_forever, daemon=True)
    fk.__enter__()
    print(f"fake kaggle on {fk.proxy}; creds {fk.username}/<key>", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
