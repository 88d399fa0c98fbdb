"""Helpers for the benchmark scripts (they print figures; nothing here asserts speed)."""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FER_ZIP = (ROOT.parent / "shared" / "datasets" / "fer2013" / "archive.zip").resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{platform.node()} · {os.cpu_count()} cores · {cpu} · Python {platform.python_version()}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageTimer:
    """A ProgressFn that records first/last time seen per stage."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}

    def __call__(self, ev) -> None:
        now = time.perf_counter() - self.t0
        self.first.setdefault(ev.stage, now)
        self.last[ev.stage] = now

    def report(self) -> str:
        return "\n".join(f"  {k:12s} {self.last[k] - self.first[k]:7.2f} s  (ends at {self.last[k]:6.2f} s)"
                         for k in self.first)


def carried_ab_runs(root: Path, doc: dict) -> dict[str, list[str]]:
    """{arm: run ids} of an A/B document in a carry folder (bench/ab_carry.py); a raw baseline reused from another
    A/B is followed there."""
    runs = {a: list(r) for a, r in doc.get("runs", {}).items()}
    if doc.get("baseline") and not runs.get("raw"):
        base = json.loads((root / "ab" / f"{doc['baseline']}.json").read_text())
        runs["raw"] = list(base.get("runs", {}).get("raw", []))
    return runs
