"""Progress reporting shared by the engine, the CLI (terminal bars) and the UI (progress files).

Engine functions take ``progress: ProgressFn | None`` and call it with a :class:`ProgressEvent`.
The CLI turns events into tqdm bars; background jobs write them to a JSON file replaced
atomically, which the Streamlit page polls. A :class:`CancelToken` lets a caller stop work between
batches; engine code checks it through :func:`check_cancel`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from fer_core.errors import Cancelled
from fer_core.fsutil import atomic_write_json, atomic_write_text  # noqa: F401 - re-exported


@dataclass
class ProgressEvent:
    stage: str                 # e.g. "download", "extract", "import", "scan:quality"
    done: float                # units done in this stage
    total: float | None = None  # None when unknown
    unit: str = "items"        # "B" for bytes, "images", ...
    message: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return max(0.0, min(1.0, self.done / self.total))


ProgressFn = Callable[[ProgressEvent], None]


def emit(progress: ProgressFn | None, stage: str, done: float, total: float | None = None,
         unit: str = "items", message: str = "", **extra) -> None:
    if progress is not None:
        progress(ProgressEvent(stage, done, total, unit, message, extra))


class CancelToken:
    """Thread-safe cancel flag; optionally also honours a flag file (for subprocess jobs)."""

    def __init__(self, flag_file: str | os.PathLike | None = None):
        self._event = threading.Event()
        self.flag_file = Path(flag_file) if flag_file else None

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        if self._event.is_set():
            return True
        if self.flag_file is not None and self.flag_file.exists():
            self._event.set()
            return True
        return False


def check_cancel(token: CancelToken | None) -> None:
    if token is not None and token.cancelled:
        raise Cancelled("Cancelled by request.", "Nothing was registered; start it again when you want.")


class FileProgress:
    """A ProgressFn that keeps the latest event per stage in a JSON file (throttled, atomic)."""

    def __init__(self, path: str | os.PathLike, min_interval: float = 0.2):
        self.path = Path(path)
        self.min_interval = min_interval
        self._last = 0.0
        self.state: dict = {"state": "running", "stage": None, "stages": {}, "updated": time.time()}
        self._lock = threading.Lock()

    def __call__(self, ev: ProgressEvent) -> None:
        with self._lock:
            d = asdict(ev)
            d["fraction"] = ev.fraction
            # when the stage started and from where, and this event's time: live throughput and ETA (jobs panel)
            # and the rates behind time estimates (fer_core.estimates)
            prev = self.state["stages"].get(ev.stage) or {}
            d["t"] = time.time()
            d["t0"], d["done0"] = prev.get("t0", d["t"]), prev.get("done0", ev.done)
            self.state["stage"] = ev.stage
            self.state["stages"][ev.stage] = d
            self.state["updated"] = time.time()
            now = time.monotonic()
            finished = ev.total is not None and ev.done >= ev.total
            if finished or now - self._last >= self.min_interval:
                self._last = now
                atomic_write_json(self.path, self.state)

    def finish(self, state: str, **info) -> None:
        with self._lock:
            self.state.update(info)
            self.state["state"] = state
            self.state["updated"] = time.time()
            atomic_write_json(self.path, self.state)


class TqdmProgress:
    """A ProgressFn drawing one terminal bar per stage (stderr)."""

    def __init__(self, disable: bool = False, min_interval: float = 0.25):
        self.bars: dict = {}
        self.disable = disable or not sys.stderr
        self.min_interval = min_interval
        self._last = 0.0

    def __call__(self, ev: ProgressEvent) -> None:
        if self.disable:
            return
        from tqdm import tqdm

        now = time.monotonic()
        finished = ev.total is not None and ev.done >= ev.total
        if ev.stage in self.bars and not finished and now - self._last < self.min_interval:
            return
        self._last = now

        bar = self.bars.get(ev.stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            scale = ev.unit == "B"
            bar = tqdm(total=ev.total, desc=ev.stage, unit=ev.unit, unit_scale=scale,
                       unit_divisor=1024 if scale else 1000, file=sys.stderr, leave=True,
                       mininterval=self.min_interval)
            self.bars = {ev.stage: bar}
        if ev.total is not None and bar.total != ev.total:
            bar.total = ev.total
        bar.n = ev.done
        if ev.message:
            bar.set_postfix_str(ev.message, refresh=False)
        bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        self.bars = {}


def combine(*fns: ProgressFn | None) -> ProgressFn:
    live = [f for f in fns if f is not None]

    def _all(ev: ProgressEvent) -> None:
        for f in live:
            f(ev)

    return _all
