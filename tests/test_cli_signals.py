"""SIGTERM keeps its meaning in forked workers: the CLI's cancel handler is inherited by pool workers, and
``Pool.terminate()`` (the scan's and image decoding's) sends SIGTERM and then waits for each worker to end. A
worker that only set the cancel flag went back to waiting for work and the command hung after its last batch
(seen on ExpW's face scan, a real hang of 10+ minutes)."""

from __future__ import annotations

import multiprocessing as mp
import signal

from fer_core import cli
from fer_core.progress import CancelToken


def _wait_forever(started, ev):
    started.set()
    ev.wait()


def test_a_forked_worker_ends_on_sigterm_while_the_command_cancels():
    token = CancelToken()
    previous = cli.cancel_on_sigterm(token)
    try:
        ctx = mp.get_context("fork")
        started, ev = ctx.Event(), ctx.Event()
        child = ctx.Process(target=_wait_forever, args=(started, ev))
        child.start()
        # a signal that lands between fork and the child's own start is dropped by Python (pending signals are
        # cleared after a fork), so wait until the child runs — an event, not a sleep
        assert started.wait(30)
        child.terminate()              # SIGTERM, as Pool.terminate() sends it
        child.join(20)
        alive = child.is_alive()
        if alive:                      # the old handler: the child would wait forever; don't leave it behind
            child.kill()
            child.join(5)
        assert not alive, "a forked worker ignored SIGTERM (it inherited the command's cancel handler)"
        assert child.exitcode == -signal.SIGTERM
        assert not token.cancelled     # the worker's signal never cancels the command itself
        signal.raise_signal(signal.SIGTERM)   # in the command's own process, SIGTERM cancels
        assert token.cancelled
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_pool_terminates_under_the_handler():
    token = CancelToken()
    previous = cli.cancel_on_sigterm(token)
    try:
        pool = mp.get_context("fork").Pool(2)
        assert list(pool.imap_unordered(abs, [-1, -2, -3])) is not None
        pool.terminate()
        pool.join()                     # returns (before the fix this could wait forever)
        assert not token.cancelled
    finally:
        signal.signal(signal.SIGTERM, previous)
