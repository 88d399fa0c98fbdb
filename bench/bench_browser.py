"""What a person waits for, end to end in a real browser, on the full FER2013 (issue 15).

Starts the app (streamlit on 127.0.0.1, a free port) over a cache holding FER2013, drives headless Chromium with
Playwright and times, from the person's input to the page settled, n times each:

  (a) opening the Quality page by its URL in a new tab (a new session; the first visit, with a cold server and an
      empty browser cache, is shown apart), and the Duplicates and Review pages the same way
  (b) one step of the Quality slider (an arrow key on the focused thumb; alternately right and left)
  (c) switching the signal to tune (click an option of "Signal to tune"; alternately the first and third)
  (d) one step of the Duplicates page's Hamming slider (arrow key, alternately right and left)
  (e) opening Review, Quality and Duplicates with the sidebar page menu, when the checkout has one

"Settled" = the script run finished (stApp's data-test-script-state back to notRunning after a run began since
the input), the running indicator (stStatusWidget) gone, every <img> loaded, and no DOM change or element load
event for 100 ms: the figure is the time of the last change (without those 100 ms). A follow-up run within 1 s
extends it. Runs the browser starts by itself on a timer (st.fragment(run_every=...), is_auto_rerun) are counted
apart and do not hold the page unsettled. Each figure carries its breakdown: the rerun request sent, the server's
first and last message back, the page's own script time ("Server work", FER_DEBUG=1), the server process's CPU
time, the browser's JavaScript and layout time (CDP Performance metrics), KiB received.

    python bench/bench_browser.py [--cache DIR] [--app-dir CHECKOUT] [-n 5] [--timeline] [--profile]
                                  [--json OUT] [--trace OUT.zip]

--timeline prints, for each measure's median run, when each element changed; --profile a Chromium CPU profile
(JavaScript self time per script) of one extra Review load, Quality step and Hamming step. --app-dir points at the
app checkout to measure (default: this one), so the same script measures an older checkout
(`git worktree add /tmp/before HEAD`). Without --cache a temporary cache is built (import + scan, about a minute)
and removed. Everything it starts (streamlit, Chromium) is stopped on exit, error, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import FER_ZIP, ROOT, machine

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run",
                 "--no-proxy-server"]
QUIET_MS = 100
GRACE_MS = 1000   # after settling, watch this long for a follow-up run (a chart's selection state, a st.rerun)

# Installed in every document before the app's own scripts: a MutationObserver over the whole document, element
# load events, the script-run state of stApp, and the websocket's traffic (rerun requests decoded from the
# protobuf), all on performance.now(). Runs that the browser asks for by itself (a fragment's run_every timer,
# is_auto_rerun) are counted apart and their DOM changes do not count as the page still changing.
INIT_JS = r"""
(() => {
  const now = () => performance.now();
  const B = window.__b = {tIn: 0, track: true, armed: false, auto: false, autoEnd: 0, pending: false};
  B.reset = () => Object.assign(B, {last: now(), sawRun: false, runs: 0, autoRuns: 0, autoMut: 0, states: [], sent: null,
      first: null, lastMsg: null, nMsg: 0, bytes: 0, nMut: 0, els: new Map(), sends: []});
  B.reset();
  const inAuto = () => B.auto || now() < B.autoEnd;
  const boxes = new WeakMap();   // node -> its element container (cached: the observer must stay cheap)
  const touch = (node) => {
    if (inAuto()) { B.autoMut++; return; }
    const t = now();
    B.last = t; B.nMut++;
    const el = node && (node.nodeType === 1 ? node : node.parentElement);
    if (!el) return;
    let box = boxes.get(el);
    if (box === undefined) { box = el.closest('[data-testid="stElementContainer"]'); if (box) boxes.set(el, box); }
    if (box) {
      const e = B.els.get(box);
      if (e) { e.last = t; e.n++; } else B.els.set(box, {first: t, last: t, n: 1});
    }
  };
  new MutationObserver((muts) => {
    for (const m of muts) {
      if (m.type === 'attributes' && m.attributeName === 'data-test-script-state') {
        const s = m.target.getAttribute('data-test-script-state'), t = now();
        if (B.auto) {
          B.states.push([t, s + ' (auto)']);
          if (s === 'notRunning') { B.auto = false; B.autoEnd = t + 50; }
          continue;
        }
        B.states.push([t, s]);
        if (s === 'running') { B.sawRun = true; B.runs++; B.pending = false; }
      }
      touch(m.target);
    }
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
  document.addEventListener('load', (e) => { if (e.target !== document) touch(e.target); }, true);
  const arm = () => { if (B.armed) { B.armed = false; B.track = true; B.tIn = now(); } };
  window.addEventListener('keydown', arm, true);
  window.addEventListener('pointerdown', arm, true);

  // BackMsg.rerun_script (field 11) = ClientState: page_name 4, fragment_id 5, is_auto_rerun 6
  const varint = (u, i) => { let v = 0, m = 1, b; do { b = u[i++]; v += (b & 127) * m; m *= 128; } while (b & 128 && i < u.length); return [v, i]; };
  const fields = (u, i, e) => {
    const out = [];
    while (i < e) {
      let t, v; [t, i] = varint(u, i);
      const f = t >>> 3, w = t & 7;
      if (w === 0) { [v, i] = varint(u, i); out.push([f, v]); }
      else if (w === 2) { [v, i] = varint(u, i); out.push([f, [i, i + v]]); i += v; }
      else if (w === 1) i += 8; else if (w === 5) i += 4; else break;
    }
    return out;
  };
  const text = (u, [s, e]) => new TextDecoder().decode(u.subarray(s, e));
  const decode = (u) => {
    const r = fields(u, 0, u.length).find(([f]) => f === 11);
    if (!r) return {kind: 'other'};
    const cs = fields(u, r[1][0], r[1][1]), get = (n) => cs.find(([f]) => f === n);
    const frag = get(5), auto = get(6), page = get(4);
    return {kind: auto && auto[1] ? 'auto' : frag ? 'fragment' : 'rerun', page: page ? text(u, page[1]) : '',
            fragment: frag ? text(u, frag[1]).slice(0, 8) : ''};
  };
  const WS = window.WebSocket;
  const Wrapped = function (...a) {
    const ws = new WS(...a);
    const send = ws.send.bind(ws);
    ws.send = (d) => {
      const u8 = d instanceof ArrayBuffer ? new Uint8Array(d) : ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : null;
      let info = {kind: '?'};
      try { if (u8) info = decode(u8); } catch (e) { info = {kind: 'undecoded'}; }
      const app = document.querySelector('[data-testid="stApp"]');
      const idle = !app || app.getAttribute('data-test-script-state') === 'notRunning';
      // a timer run counts apart only when it starts on an idle page with no run of the person's pending
      if (info.kind === 'auto') { if (idle && !B.pending) B.auto = true; B.autoRuns++; }
      else if (info.kind !== 'other') { B.auto = false; B.autoEnd = 0; B.pending = true; }
      if (B.track && info.kind !== 'auto') {
        const t = now();
        if (B.sent === null) B.sent = t;
        if (B.sends.length < 8) B.sends.push([Math.round(t - B.tIn), info.kind, info.page || '', info.fragment || '']);
      }
      return send(d);
    };
    ws.addEventListener('message', (e) => {
      if (inAuto()) return;
      const t = now();
      if (B.track && B.first === null) B.first = t;
      B.lastMsg = t; B.nMsg++;
      B.bytes += e.data.byteLength || e.data.size || e.data.length || 0;
    });
    return ws;
  };
  Wrapped.prototype = WS.prototype;
  for (const k of ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED']) Wrapped[k] = WS[k];
  window.WebSocket = Wrapped;
})();
"""

# Reset before an input (the next keydown/pointerdown stamps tIn); for a page load tIn = 0 = navigation start.
ARM_JS = "() => { const B = window.__b; B.reset(); B.armed = true; B.track = false; }"

SETTLED_JS = """(quiet) => {
  const B = window.__b, app = document.querySelector('[data-testid="stApp"]');
  if (!B || !app) return false;
  const s = app.getAttribute('data-test-script-state');
  if (s === 'running' || s === 'rerunRequested') { if (!B.auto) B.sawRun = true; return false; }
  if (!B.sawRun || s !== 'notRunning' || app.getAttribute('data-test-connection-state') !== 'CONNECTED') return false;
  if (document.querySelector('[data-testid="stStatusWidget"]')) return false;
  if (Array.from(document.images).some(i => !i.complete)) return false;
  return performance.now() - B.last >= quiet;
}"""

REPORT_JS = r"""() => {
  const B = window.__b, rel = (t) => t === null ? null : t - B.tIn;
  const sw = Array.from(document.querySelectorAll('[data-testid="stCaptionContainer"]'))
      .map(e => e.innerText.match(/Server work[^0-9]*([0-9,]+) ms/)).find(m => m);
  const SEL = ['stPlotlyChart', 'stImage', 'stMetric', 'stDataFrame', 'stTable', 'stSlider', 'stSelectbox', 'stCheckbox',
               'stButton', 'stAlert', 'stNumberInput', 'stMarkdown', 'stCaptionContainer']
               .map(c => `[data-testid="${c}"]`).join(',');
  const els = [];   // every element that changed, in page order: [where/what, first, last] (ms from the input)
  document.querySelectorAll('[data-testid="stElementContainer"]').forEach((box) => {
    const e = B.els.get(box);
    if (!e) return;
    const inner = box.querySelector(SEL) || box.querySelector('[data-testid]:not([data-testid="stElementContainer"])');
    const what = (box.closest('[data-testid="stSidebar"]') ? 'sidebar ' : '') + (inner ? inner.getAttribute('data-testid') : '?');
    const txt = (box.innerText || '').replace(/\s+/g, ' ').trim().slice(0, 40);
    els.push([what, txt, Math.round(e.first - B.tIn), Math.round(e.last - B.tIn), e.n]);
  });
  return {settled: B.last - B.tIn, els, sent: rel(B.sent), first: rel(B.first), last_msg: rel(B.lastMsg), n_msg: B.nMsg,
          bytes: B.bytes, n_mut: B.nMut,
          states: B.states.map(([t, s]) => [Math.round(t - B.tIn), s]), sends: B.sends, runs: B.runs,
          auto_runs: B.autoRuns,
          server_work: sw ? parseInt(sw[1].replace(/,/g, '')) : null,
          exceptions: document.querySelectorAll('[data-testid="stException"]').length};
}"""

MARK_JS = "() => [window.__b.last, window.__b.runs]"

# Tag the sidebar link to a page (the built-in page menu or a page_link menu) so Playwright can click it.
NAV_JS = """(label) => {
  document.querySelectorAll('[data-bench-nav]').forEach(e => e.removeAttribute('data-bench-nav'));
  const links = Array.from(document.querySelectorAll('[data-testid="stSidebar"] a'));
  const a = links.find(e => e.innerText.trim().replace(/^\\W+/, '').startsWith(label));
  if (!a) return false;
  a.setAttribute('data-bench-nav', '1');
  return true;
}"""


def log(msg: str) -> None:
    print(msg, flush=True)


def run_cli(app_dir: Path, cache: Path, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(app_dir))
    r = subprocess.run([sys.executable, "-m", "fer_core", "--quiet", "--cache", str(cache), *args], cwd=app_dir,
                       env=env, capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"fer_core {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout.strip()


def ensure_cache(app_dir: Path, cache: Path) -> None:
    if not (cache / "datasets" / "fer2013").exists():
        t0 = time.perf_counter()
        log(run_cli(app_dir, cache, "import", str(FER_ZIP), "--name", "fer2013"))
        log(f"  import: {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    log(run_cli(app_dir, cache, "scan", "fer2013"))   # cached when already scanned
    log(f"  scan: {time.perf_counter() - t0:.1f} s")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children)."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(self, app_dir: Path, cache: Path, logfile: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, FER_CACHE_DIR=str(cache), PYTHONPATH=str(app_dir), FER_DEBUG="1")
        self.workdir = logfile.parent
        self.log = open(logfile, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.address", "127.0.0.1", "--server.port", str(self.port),
             "--server.fileWatcherType", "none"],
            cwd=app_dir, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"streamlit did not start (see {self.log.name})")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
                except ProcessLookupError:
                    pass
        self.log.close()


class Probe:
    """One browser page with the instruments, and the timing of one input at a time."""

    def __init__(self, ctx, server: Server):
        self.ctx = ctx   # a browser context with INIT_JS installed (see new_context)
        self.page = ctx.new_page()
        self.page.set_default_timeout(120_000)
        self.cdp = self.ctx.new_cdp_session(self.page)
        self.cdp.send("Performance.enable")
        self.server = server

    def _browser_cpu(self) -> dict:
        m = {x["name"]: x["value"] for x in self.cdp.send("Performance.getMetrics")["metrics"]}
        return {k: m.get(k, 0.0) for k in ("ScriptDuration", "LayoutDuration", "RecalcStyleDuration", "TaskDuration")}

    def measure(self, act, timeout_ms: float = 120_000, on_settled=None) -> dict:
        """Arm, do `act` (an input, or a navigation), wait until settled; return the figures (ms, from the input)."""
        page = self.page
        try:
            page.evaluate(ARM_JS)
        except Exception:  # noqa: BLE001 - no document yet (first navigation): the init script arms itself
            pass
        b0, c0 = self._browser_cpu(), cpu_s(self.server.proc.pid)
        act()
        try:
            page.wait_for_function("() => window.__b && window.__b.sent !== null", timeout=30_000, polling=20)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeError("the input sent nothing to the server within 30 s (the widget did not change: "
                               "disabled, or already at its end?)") from exc
        while True:
            try:
                page.wait_for_function(SETTLED_JS, arg=QUIET_MS, timeout=timeout_ms, polling=20)
            except Exception as exc:  # noqa: BLE001 - say what the page was doing
                shot = self.server.workdir / f"unsettled-{time.time():.0f}.png"
                page.screenshot(path=str(shot), full_page=True)
                state = page.evaluate("""() => { const B = window.__b, a = document.querySelector('[data-testid="stApp"]');
                  return {armed: B.armed, tIn: B.tIn, sawRun: B.sawRun, auto: B.auto, runs: B.runs, sends: B.sends,
                          states: B.states.slice(-6), quiet_ms: performance.now() - B.last,
                          app: a && a.getAttribute('data-test-script-state'),
                          status: !!document.querySelector('[data-testid="stStatusWidget"]'),
                          images_loading: Array.from(document.images).filter(i => !i.complete).length}; }""")
                raise RuntimeError(f"the page did not settle: {state} (screenshot {shot})") from exc
            if on_settled:
                on_settled()
                on_settled = None
            mark = page.evaluate(MARK_JS)
            page.wait_for_timeout(GRACE_MS)
            if page.evaluate(MARK_JS) == mark:
                break   # else the page changed again (a follow-up run): settle again
        r = page.evaluate(REPORT_JS)
        b1 = self._browser_cpu()
        r["server_cpu"] = (cpu_s(self.server.proc.pid) - c0) * 1000
        r["browser_js"] = (b1["ScriptDuration"] - b0["ScriptDuration"]) * 1000
        r["browser_layout"] = (b1["LayoutDuration"] + b1["RecalcStyleDuration"]
                               - b0["LayoutDuration"] - b0["RecalcStyleDuration"]) * 1000
        return r

    def profile(self, act, top: int = 8) -> str:
        """The browser main thread's CPU profile of one input until settled: self time per script and function."""
        self.cdp.send("Profiler.enable")
        self.cdp.send("Profiler.setSamplingInterval", {"interval": 200})
        self.cdp.send("Profiler.start")
        out = {}
        try:
            r = self.measure(act, on_settled=lambda: out.update(self.cdp.send("Profiler.stop")))
        finally:
            if not out:
                self.cdp.send("Profiler.stop")
        prof = out["profile"]
        nodes = {n["id"]: n["callFrame"] for n in prof["nodes"]}
        by_url: dict[str, float] = {}
        by_fn: dict[str, float] = {}
        for sid, dt in zip(prof["samples"], prof["timeDeltas"]):
            cf = nodes[sid]
            url = cf["url"].rsplit("/", 1)[-1] or cf["functionName"] or "?"
            by_url[url] = by_url.get(url, 0) + dt / 1000
            fn = f"{cf['functionName'] or '(anonymous)'} ({url}:{cf['lineNumber']})"
            by_fn[fn] = by_fn.get(fn, 0) + dt / 1000
        window = (prof["endTime"] - prof["startTime"]) / 1000
        native = {"(program)", "(idle)", "(garbage collector)"}
        js = sum(v for k, v in by_url.items() if k not in native)
        lines = [f"settled in {r['settled']:,.0f} ms; profiled {window:,.0f} ms (arming to settled + {QUIET_MS} ms quiet): "
                 f"JavaScript {js:,.0f} ms, garbage collector {by_url.get('(garbage collector)', 0):,.0f} ms, "
                 f"(program) {by_url.get('(program)', 0):,.0f} ms (the browser's own work, style, layout, paint, and "
                 f"in headless Chromium also waiting), idle {by_url.get('(idle)', 0):,.0f} ms. JavaScript self time by script:"]
        lines += [f"      {v:7,.0f} ms  {k}" for k, v in sorted(by_url.items(), key=lambda kv: -kv[1])
                  if k not in native][:top]
        lines += ["    top functions:"] + [f"      {v:7,.0f} ms  {k}" for k, v in sorted(by_fn.items(), key=lambda kv: -kv[1])
                                            if not k.startswith("(program)") and not k.startswith("(idle)")][:top]
        return "\n".join(lines)

    def goto(self, path: str) -> dict:
        r = self.measure(lambda: self.page.goto(self.server.url + path))
        return r

    def nav(self, label: str) -> dict:
        if not self.page.evaluate(NAV_JS, label):
            raise SystemExit(f"no sidebar link to {label!r}")
        return self.measure(lambda: self.page.locator("[data-bench-nav]").click())

    def press(self, locator, key: str) -> dict:
        locator.focus()
        self.page.wait_for_timeout(50)
        return self.measure(lambda: self.page.keyboard.press(key))

    def idle(self, ms: int = 300) -> None:
        self.page.wait_for_timeout(ms)

    def close(self) -> None:
        self.page.close()


def new_context(browser, width: int, height: int):
    """A browser profile of its own (empty HTTP cache); every tab opened in it is a new Streamlit session."""
    ctx = browser.new_context(viewport={"width": width, "height": height})
    ctx.add_init_script(INIT_JS)
    return ctx


def summarize(name: str, rs: list[dict]) -> dict:
    def med(k):
        v = [r[k] for r in rs if r.get(k) is not None]
        return statistics.median(v) if v else None

    s = [r["settled"] for r in rs]
    return {"what": name, "n": len(rs), "median": statistics.median(s), "min": min(s), "max": max(s),
            "sent": med("sent"), "first": med("first"), "last_msg": med("last_msg"), "server_work": med("server_work"),
            "server_cpu": med("server_cpu"), "browser_js": med("browser_js"), "browser_layout": med("browser_layout"),
            "n_msg": med("n_msg"), "runs": med("runs"), "kb": (med("bytes") or 0) / 1024, "exceptions": sum(r["exceptions"] for r in rs)}


def fmt(v, w=6):
    return f"{v:>{w},.0f}" if v is not None else f"{'–':>{w}}"


def print_table(rows: list[dict]) -> None:
    log("\nall times in ms from the input (key down / pointer down / navigation start) to settled; breakdown = medians")
    log(f"{'what':58s} {'n':>2s} {'median':>6s} {'min':>6s} {'max':>6s} | {'sent':>5s} {'1st msg':>7s} {'last msg':>8s} "
        f"{'srv work':>8s} {'srv cpu':>7s} {'js':>5s} {'layout':>6s} {'msgs':>4s} {'KiB':>5s} {'runs':>4s}")
    for r in rows:
        log(f"{r['what']:58s} {r['n']:>2d} {fmt(r['median'])} {fmt(r['min'])} {fmt(r['max'])} | {fmt(r['sent'], 5)} "
            f"{fmt(r['first'], 7)} {fmt(r['last_msg'], 8)} {fmt(r['server_work'], 8)} {fmt(r['server_cpu'], 7)} "
            f"{fmt(r['browser_js'], 5)} {fmt(r['browser_layout'], 6)} {fmt(r['n_msg'], 4)} {fmt(r['kb'], 5)} {fmt(r['runs'], 4)}"
            + (f"  ⚠ {r['exceptions']} exception(s) on the page" if r["exceptions"] else ""))


def print_timelines(results: dict[str, list[dict]]) -> None:
    """For the median run of each measure: when each element changed (ms from the input). Elements redrawn in
    depth (charts: hundreds of DOM changes) one by one, the others (re-rendered text, stale marks) by kind."""
    for name, rs in results.items():
        r = sorted(rs, key=lambda r: r["settled"])[len(rs) // 2]
        log(f"\n{name.strip()}: median run {r['settled']:,.0f} ms · input sent {fmt(r['sent'], 0)} · server's first message "
            f"{fmt(r['first'], 0)} · last message {fmt(r['last_msg'], 0)} · server work {fmt(r['server_work'], 0)} · "
            f"{r['bytes'] / 1024:,.0f} KiB received · script state {r['states']}")
        if r.get("sends"):
            log(f"    rerun requests sent (ms, kind, page, fragment): {r['sends']}")
        rows, kinds = [], {}
        for what, txt, first, last, k in r["els"]:
            if k >= 20:
                rows.append((first, last, f"{k:>5,} DOM changes  {what}" + (f' "{txt}"' if txt else "")))
            else:
                g = kinds.setdefault(what, [0, first, last])
                g[0] += 1
                g[1], g[2] = min(g[1], first), max(g[2], last)
        rows += [(first, last, f"{n:>5,} × {what}") for what, (n, first, last) in kinds.items()]
        for first, last, what in sorted(rows):
            log(f"    {first:>6,} → {last:>6,} ms  {what}")


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def bench(app_dir: Path, cache: Path, n: int, width: int, height: int, trace: str | None, workdir: Path,
          profile: bool = False) -> tuple[dict, dict]:
    from playwright.sync_api import sync_playwright

    results: dict[str, list[dict]] = {}
    profiles: dict[str, str] = {}

    def add(key: str, r: dict) -> dict:
        results.setdefault(key, []).append(r)
        extra = f" · server work {r['server_work']} ms" if r.get("server_work") is not None else ""
        auto = f", {r['auto_runs']} timer run(s) meanwhile" if r["auto_runs"] else ""
        log(f"  {key.strip()}: {r['settled']:,.0f} ms ({r['runs']} run(s){auto}{extra})")
        return r

    server = Server(app_dir, cache, workdir / "streamlit.log")
    try:
        t0 = time.perf_counter()
        server.wait_healthy()
        log(f"streamlit healthy after {time.perf_counter() - t0:.1f} s on {server.url}")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                # (a) and the other pages, loaded by URL, each in a new tab (a new Streamlit session) of one
                # browser profile: the first visit has an empty HTTP cache (and a cold server), the others
                # have the app's scripts cached, as a person opening the app again has
                ctx = new_context(browser, width, height)
                for i in range(n + 1):
                    for path in (["/Quality"] if i == 0 else ["/Quality", "/Duplicates", "/Review"]):
                        pr = Probe(ctx, server)
                        try:
                            r = pr.goto(path)
                        finally:
                            pr.close()
                        add("(a) Quality first visit: cold server, empty browser cache" if i == 0 else
                            "(a) Quality first load, new tab" if path == "/Quality" else
                            f"    {path[1:]} first load, new tab", r)

                if profile:
                    pr = Probe(ctx, server)
                    try:
                        profiles["(e) Review first load, new tab"] = pr.profile(lambda: pr.page.goto(server.url + "/Review"))
                    finally:
                        pr.close()

                pr = Probe(ctx, server)
                if trace:
                    pr.ctx.tracing.start(screenshots=True, snapshots=True)
                try:
                    page = pr.page
                    main = page.locator('[data-testid="stMain"]')
                    pr.goto("/Quality")
                    # (b) the Quality slider, alternately one step right and left (ends where it started)
                    thumb = main.locator('[data-testid="stSlider"] input[type="range"]').first
                    if thumb.is_disabled():   # the filter is off in this cache's recipe (an auto-saved draft)
                        log("  the first Quality filter is off here: switching it on first (not timed)")
                        pr.measure(main.locator('[data-testid="stCheckbox"]').filter(has_text="Filter on").first.click)
                    for i in range(n + n % 2):
                        pr.idle()
                        r = pr.press(thumb, "ArrowRight" if i % 2 == 0 else "ArrowLeft")
                        if i < n:
                            add("(b) Quality slider move", r)
                    if profile:
                        pr.idle()
                        profiles["(b) Quality slider move"] = pr.profile(lambda: (thumb.focus(), page.keyboard.press("ArrowRight")))
                        pr.idle()
                        pr.press(thumb, "ArrowLeft")
                    # (c) switch the signal to tune, alternately to the second and the first option
                    combo = page.get_by_role("combobox", name="Signal to tune")
                    for i in range(n + n % 2):
                        pr.idle()
                        combo.click()
                        opt = page.get_by_role("option").nth(2 if i % 2 == 0 else 0)   # not 1, Brightness: see below
                        opt.wait_for()
                        r = pr.measure(opt.click)
                        if i < n:
                            add("(c) Quality switch signal", r)
                    # (d) the Duplicates page's Hamming slider
                    has_menu = bool(page.evaluate(NAV_JS, "Duplicates"))
                    pr.idle()
                    if has_menu:
                        pr.nav("Duplicates")
                    else:
                        pr.goto("/Duplicates")
                    sl = main.locator('[data-testid="stSlider"]').filter(has_text=re.compile("Hamming|Near-dup"))
                    sl = (sl.first if sl.count() else main.locator('[data-testid="stSlider"]').first)
                    for i in range(n + n % 2):
                        pr.idle()
                        r = pr.press(sl.locator('input[type="range"]').first, "ArrowRight" if i % 2 == 0 else "ArrowLeft")
                        if i < n:
                            add("(d) Duplicates Hamming slider move", r)
                    if profile:
                        pr.idle()
                        th = sl.locator('input[type="range"]').first
                        profiles["(d) Duplicates Hamming slider move"] = pr.profile(lambda: (th.focus(), page.keyboard.press("ArrowRight")))
                        pr.idle()
                        pr.press(th, "ArrowLeft")
                    # (e) switching pages in one session, through the sidebar menu (when the checkout has one)
                    if has_menu:
                        for _ in range(n):
                            for label in ("Review", "Quality", "Duplicates"):
                                pr.idle()
                                add(f"{'(e)' if label == 'Review' else '   '} open {label} from the sidebar menu",
                                    pr.nav(label))
                    else:
                        log("  (no sidebar page menu in this checkout: pages were measured by URL only)")
                finally:
                    if trace:
                        pr.ctx.tracing.stop(path=trace)
                        log(f"trace: {trace} (open with `playwright show-trace`)")
                    pr.close()
                    ctx.close()
            finally:
                browser.close()
    finally:
        server.stop()
    return results, profiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, help="a cache directory for the bench, with (or to build) FER2013; default: a "
                    "temporary one. Not a person's own cache: the bench moves sliders, and a checkout that auto-saves "
                    "recipe drafts saves its moves there")
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the app checkout to measure (default: this one)")
    ap.add_argument("-n", type=int, default=5, help="repetitions of each measurement")
    ap.add_argument("--width", type=int, default=1500)
    ap.add_argument("--height", type=int, default=1000)
    ap.add_argument("--timeline", action="store_true",
                    help="print, for each measure's median run, when each element changed")
    ap.add_argument("--json", help="write every figure to this file")
    ap.add_argument("--profile", action="store_true",
                    help="also profile the browser's main thread over one extra Review page load, Quality slider move "
                         "and Duplicates slider move")
    ap.add_argument("--trace", help="write a Playwright trace of the interaction session to this zip")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # run the finally blocks: stop streamlit and Chromium
    app_dir = args.app_dir.resolve()
    if not (app_dir / "app.py").exists():
        raise SystemExit(f"{app_dir} has no app.py")
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    workdir = Path(tempfile.mkdtemp(prefix="bench-browser-"))   # the streamlit log; kept if something fails
    cache = args.cache.resolve() if args.cache else Path(tempfile.mkdtemp(prefix="bench-browser-cache-"))
    ok = False
    try:
        log(f"machine: {machine()} · app: {app_dir} · cache: {cache}")
        log(f"load average before: {loadavg()}")
        ensure_cache(app_dir, cache)
        t0 = time.perf_counter()
        results, profiles = bench(app_dir, cache, args.n, args.width, args.height, args.trace, workdir, args.profile)
        log(f"load average after: {loadavg()} ({time.perf_counter() - t0:.0f} s of measuring)")
        rows = [summarize(k, v) for k, v in results.items()]
        print_table(rows)
        if args.timeline:
            print_timelines(results)
        for k, v in profiles.items():
            log(f"\nbrowser CPU profile, one more {k.split(' ', 1)[1]} (not in the figures above): {v}")
        if args.json:
            Path(args.json).write_text(json.dumps({"app_dir": str(app_dir), "machine": machine(), "rows": rows,
                                                   "raw": results}, indent=1))
        ok = True
    finally:
        if not args.cache:
            shutil.rmtree(cache, ignore_errors=True)
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"streamlit log kept in {workdir}")


if __name__ == "__main__":
    main()
