#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv, installs pinned requirements, runs pytest.
# Browser tests need Debian's Chromium: installed here with apt-get when missing and running as root.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    echo "Installing Debian's chromium for the browser tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-color-emoji >/dev/null
  else
    echo "WARNING: /usr/bin/chromium is missing: the browser tests will fail (sudo apt-get install -y chromium)." >&2
  fi
fi
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
