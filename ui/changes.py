""""Since you last looked": say once what changed the decisions when the person did not change them here.

Every page that computes decisions calls :func:`notice` with them. It remembers, per dataset and browser
session, the last decisions seen (their fingerprint and counts), the signal families they rested on, the
import, and the last override written; in a new session (a reload, a new tab) it starts from what the last
session saw, kept in ``cache/datasets/<name>/seen.json``. When the decisions differ and something the person
did not do here explains it (signals finished or were recomputed, overrides written in another tab or session,
a re-import), it says so once, with the counts before and after. Moving a slider or clicking an override here
changes the decisions without a notice: the page already shows that.
"""

from __future__ import annotations

import json
import time

import pandas as pd
import streamlit as st

from fer_core import datasets, review, staleness
from fer_core.progress import atomic_write_json

DISK_EVERY_S = 15.0


def _others_since(ds, seq: int, me: str | None) -> int:
    """Overrides written since event ``seq`` by anyone but this session."""
    h = review.store_for(ds).history(limit=5000)
    h = h[h["seq"] > seq]
    return int((h["author"].fillna("") != me).sum()) if me else len(h)   # none of them is this session's


def _read_disk(ds) -> dict | None:
    try:
        return json.loads(ds.paths.seen.read_text())
    except (OSError, ValueError):
        return None


def external_changes(ds, prev: dict, cur: dict, me: str | None) -> list[str]:
    """What changed between two views that this session did not do."""
    out = []
    if prev.get("catalog_hash") != cur.get("catalog_hash"):
        return ["the dataset was re-imported"]
    a, b = prev.get("signals") or {}, cur.get("signals") or {}
    words = staleness.FAMILY_WORDS
    for verb, fams in (("were added", [f for f in b if f not in a]),
                       ("were recomputed", [f for f in b if f in a and a[f] != b[f]]),
                       ("went out of date", [f for f in a if f not in b])):
        for w in dict.fromkeys(words.get(f, f) for f in fams):
            out.append(f"{w} {verb}")
    if cur["seq"] != prev.get("seq", 0):
        n = _others_since(ds, prev.get("seq", 0), me)
        if n:
            out.append(f"{n:,} override{'s were' if n != 1 else ' was'} written in another tab or session")
    return out


def notice(name: str, signals: pd.DataFrame, dec: pd.DataFrame, rec=None) -> str | None:
    """Show (once) what changed the decisions since this session last saw them; returns the text shown."""
    ds = datasets.load(name)
    cur = staleness.record(ds, signals, dec, rec, save=False)
    cur["seq"] = staleness.last_override_event(ds)
    mem = st.session_state.setdefault("_seen_decisions", {})
    prev = mem.get(name) or _read_disk(ds)
    wrote = (mem.get(name) or {}).get("_written", 0.0)
    mem[name] = {**cur, "_written": wrote}
    if name not in st.session_state.setdefault("_seen_once", set()) or time.time() - wrote > DISK_EVERY_S \
            or (prev and any(prev.get(k) != cur.get(k) for k in ("signals", "catalog_hash", "seq"))):
        st.session_state["_seen_once"].add(name)
        try:
            atomic_write_json(ds.paths.seen, {k: v for k, v in cur.items() if not k.startswith("_")})
            mem[name]["_written"] = time.time()
        except OSError:
            pass   # only the next session's notice is lost
    if not prev or prev.get("fingerprint") == cur["fingerprint"]:
        return None
    what = external_changes(ds, prev, cur, st.session_state.get("_author"))
    if not what:
        return None
    counts = (f"rejected {prev.get('rejected', 0):,} → {cur['rejected']:,}" if prev.get("rejected") != cur["rejected"]
              else f"as many rejected ({cur['rejected']:,}), but not the same images")
    txt = f"Since you last looked: {'; '.join(what)}; {counts}."
    st.info(txt + " Exports and runs made before are marked stale on the Export and Train pages.", icon="🔔")
    return txt
