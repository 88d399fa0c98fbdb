"""Waiting on a child that works (a training job, a page's background run) without racing it.

A fixed deadline fails on a slow machine while the child is still making progress (CI's 2 cores were once ~4x
slower than the ones the deadlines were set on). Here the clock that fails the test is the time since the child
last showed progress; a slow machine only makes the test wait longer, a stuck child still fails it."""

from __future__ import annotations

import time
from typing import Callable

import pytest


def wait_moving(finished: Callable[[], bool], progress: Callable[[], object], *, what: str,
                stall: float = 300.0, limit: float = 3600.0, poll: float = 0.5) -> None:
    """Poll until ``finished()`` is true. ``progress()`` returns what shows the child moving (a step counter, its
    stage); the test fails when that has not changed for ``stall`` seconds, or after ``limit`` seconds in all."""
    start = last_change = time.time()
    last = object()
    while not finished():
        now = time.time()
        sig = progress()
        if sig != last:
            last, last_change = sig, now
        if now - last_change > stall:
            pytest.fail(f"{what}: no progress for {stall:.0f} s (last seen: {last!r})")
        if now - start > limit:
            pytest.fail(f"{what}: not finished after {limit:.0f} s (last seen: {last!r})")
        time.sleep(poll)


def wait_job(jm, job_id: str, *, stall: float = 300.0, limit: float = 3600.0):
    """``JobManager.wait`` without a fixed deadline: returns the finished job's status; fails on a stalled job."""
    box = {}

    def finished() -> bool:
        box["st"] = st = jm.status(job_id)
        return st.finished

    wait_moving(finished, lambda: (box["st"].state, box["st"].stage, box["st"].done, box["st"].message),
                what=f"job {job_id}", stall=stall, limit=limit)
    return box["st"]
