"""Manual overrides (keep / reject / relabel), stored in SQLite under the dataset's home.

Every click is one transaction appended to an event log (``events``) and reflected in the current
state (``overrides``). WAL mode plus ``BEGIN IMMEDIATE`` serialises concurrent writers (two browser
sessions, the CLI) without losing a write. Undo marks the latest event (or the latest batch of a bulk
action) undone and restores each image's previous state from the log. Overrides always win over the
recipe (within its scope) and survive re-imports, reloads and restarts.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import pandas as pd

from fer_core.errors import DiskFull, InvalidInput
from fer_core.sources.labels import CANONICAL

ACTIONS = ("keep", "reject", "relabel", "clear")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    batch TEXT NOT NULL,
    image_id TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('keep', 'reject', 'relabel', 'clear')),
    label TEXT,
    note TEXT,
    author TEXT,
    ts REAL NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_image ON events(image_id, seq);
CREATE TABLE IF NOT EXISTS overrides (
    image_id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    label TEXT,
    ts REAL NOT NULL,
    seq INTEGER NOT NULL
);
"""


class ReviewStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.executescript(_SCHEMA)

    @contextmanager
    def _conn(self):
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            c.execute("PRAGMA journal_mode=WAL")
            c.execute("PRAGMA synchronous=NORMAL")
            c.execute("PRAGMA busy_timeout=30000")
            yield c
        finally:
            c.close()

    @contextmanager
    def _tx(self, what: str = "change"):
        try:
            with self._conn() as c:
                c.execute("BEGIN IMMEDIATE")
                try:
                    yield c
                    c.execute("COMMIT")
                except BaseException:
                    if c.in_transaction:
                        c.execute("ROLLBACK")
                    raise
        except sqlite3.OperationalError as exc:
            if getattr(exc, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL and "disk is full" not in str(exc):
                raise
            raise DiskFull(f"The disk is full: the {what} was not saved.",
                           f"Free space on the disk holding {self.path.parent}, then try again.") from exc

    # -- writing
    def set(self, image_ids: str | Iterable[str], action: str, label: str | None = None, note: str = "",
            author: str = "") -> str:
        """Record one action for one or many images (one transaction, one undo step). Returns the batch id."""
        if action not in ACTIONS:
            raise InvalidInput(f"Unknown override '{action}'.", "Use keep, reject, relabel or clear.")
        if action == "relabel" and label not in CANONICAL:
            raise InvalidInput(f"'{label}' is not a label.", "Use one of: " + ", ".join(CANONICAL))
        ids = [image_ids] if isinstance(image_ids, str) else list(dict.fromkeys(image_ids))
        batch = uuid.uuid4().hex[:12]
        now = time.time()
        with self._tx("override") as c:
            for iid in ids:
                cur = c.execute("INSERT INTO events(batch, image_id, action, label, note, author, ts) VALUES (?,?,?,?,?,?,?)",
                                (batch, iid, action, label if action == "relabel" else None, note, author, now))
                self._apply(c, iid, action, label, now, cur.lastrowid)
        return batch

    @staticmethod
    def _apply(c, iid, action, label, ts, seq):
        if action == "clear":
            c.execute("DELETE FROM overrides WHERE image_id = ?", (iid,))
        else:
            c.execute("INSERT INTO overrides(image_id, action, label, ts, seq) VALUES (?,?,?,?,?) "
                      "ON CONFLICT(image_id) DO UPDATE SET action=excluded.action, label=excluded.label, "
                      "ts=excluded.ts, seq=excluded.seq", (iid, action, label if action == "relabel" else None, ts, seq))

    def undo(self, author: str | None = None) -> list[str]:
        """Undo the latest action (by ``author`` if given). Returns the affected image ids."""
        with self._tx("undo") as c:
            q = "SELECT batch FROM events WHERE undone = 0" + (" AND author = ?" if author else "") + \
                " ORDER BY seq DESC LIMIT 1"
            row = c.execute(q, (author,) if author else ()).fetchone()
            if row is None:
                return []
            batch = row[0]
            ids = [r[0] for r in c.execute("SELECT DISTINCT image_id FROM events WHERE batch = ?", (batch,))]
            c.execute("UPDATE events SET undone = 1 WHERE batch = ?", (batch,))
            for iid in ids:
                prev = c.execute("SELECT action, label, ts, seq FROM events WHERE image_id = ? AND undone = 0 "
                                 "ORDER BY seq DESC LIMIT 1", (iid,)).fetchone()
                if prev is None:
                    c.execute("DELETE FROM overrides WHERE image_id = ?", (iid,))
                else:
                    self._apply(c, iid, prev[0], prev[1], prev[2], prev[3])
            return ids

    # -- reading
    def overrides(self) -> pd.DataFrame:
        with self._conn() as c:
            df = pd.read_sql_query("SELECT image_id, action, label, ts FROM overrides ORDER BY image_id", c)
        return df

    def history(self, limit: int = 200) -> pd.DataFrame:
        with self._conn() as c:
            return pd.read_sql_query("SELECT seq, batch, image_id, action, label, note, author, ts, undone FROM events "
                                     "ORDER BY seq DESC LIMIT ?", c, params=(limit,))

    def get(self, image_id: str) -> tuple[str, str | None] | None:
        with self._conn() as c:
            r = c.execute("SELECT action, label FROM overrides WHERE image_id = ?", (image_id,)).fetchone()
        return (r[0], r[1]) if r else None

    def count(self) -> int:
        with self._conn() as c:
            return c.execute("SELECT COUNT(*) FROM overrides").fetchone()[0]


def store_for(ds) -> ReviewStore:
    return ReviewStore(ds.paths.review_db)


# ---- review queues ------------------------------------------------------------------------------------------

QUEUE_STATES = {
    "to review": "no manual decision yet",       # the Review queue's word
    "undecided": "no manual decision yet",       # the Label-issues tab's word
    "decided by hand": "any manual decision",
    "rejected": "rejected (by the recipe or by hand)",
    "kept by hand": "kept by a manual decision",
    "all flagged": "every image of the queue",
    "all": "every image of the queue",
}


def queue_mask(decisions: pd.DataFrame, labels, base, label: str = "any", state: str = "all"):
    """Which images of a queue (``base``, a boolean mask aligned with ``decisions``) to show: of one given
    ``label`` (or "any") and in one of :data:`QUEUE_STATES`."""
    import numpy as np

    if state not in QUEUE_STATES:
        raise InvalidInput(f"Unknown review state '{state}'.", "One of: " + ", ".join(QUEUE_STATES))
    mask = np.asarray(base, bool).copy()
    if label != "any":
        mask &= np.asarray(labels) == label
    ov = decisions["override"].to_numpy()
    if state in ("to review", "undecided"):
        mask &= ov == ""
    elif state == "decided by hand":
        mask &= ov != ""
    elif state == "rejected":
        mask &= ~decisions["keep"].to_numpy()
    elif state == "kept by hand":
        mask &= ov == "keep"
    return mask
