"""cli.main() called in-process leaves the SIGTERM handler as it found it (forked pool workers inherit it)."""

from __future__ import annotations

import signal

from fer_core import cli


def test_main_restores_the_sigterm_handler():
    before = signal.getsignal(signal.SIGTERM)
    assert cli.main(["--quiet", "datasets"]) == 0
    assert cli.main(["--quiet", "scan", "no-such-dataset"]) == 1
    assert signal.getsignal(signal.SIGTERM) is before
