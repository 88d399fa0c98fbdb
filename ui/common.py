"""Shared page setup: page config, sidebar dataset picker, job manager, job progress panel."""

from __future__ import annotations

import os
import time

import streamlit as st

import fer_core
from fer_core import datasets
from fer_core.errors import FerError
from fer_core.jobs import JobManager, JobStatus


class RawFigure:
    """Placeholder; replaced below once plotly is imported."""


def _make_raw_figure():
    import plotly.graph_objects as go

    class _RawFigure(go.Figure):
        """A prebuilt plotly figure dict handed to ``st.plotly_chart`` without graph-object validation.

        Streamlit turns any figure it receives into a dict: a dict is first validated by building a
        ``go.Figure`` (~6 ms per chart here, ~40 ms per Quality page run with six charts: measured in
        bench/bench_ui.py), while a ``Figure`` instance is only asked for ``to_dict()``. Our dicts are
        built by our own code, so we pass them through as they are.
        """

        def __init__(self, spec: dict):  # noqa: D107 - deliberately skips go.Figure.__init__
            self._spec = spec

        def to_dict(self) -> dict:
            return self._spec

    return _RawFigure


def raw_figure(spec: dict):
    global RawFigure
    if not hasattr(RawFigure, "to_dict"):
        RawFigure = _make_raw_figure()
    return RawFigure(spec)


@st.cache_resource
def job_manager() -> JobManager:
    """One manager per server process: holds the Popen handles of background jobs."""
    return JobManager()


# The sidebar menu. With a pages/ directory Streamlit labels the entry page by its file name ("app"), and only
# st.navigation can rename it; so the built-in menu is hidden (client.showSidebarNavigation = false in
# .streamlit/config.toml) and this one, with st.page_link, says "Home" (the documented custom-menu route).
PAGES = [("app.py", "Home", "🙂"), ("pages/1_Datasets.py", "Datasets", "📥"), ("pages/2_Quality.py", "Quality", "🔍"),
         ("pages/3_Duplicates.py", "Duplicates & leakage", "👯"), ("pages/4_Review.py", "Review", "🧐"),
         ("pages/5_Export.py", "Export", "📦"), ("pages/6_Embedding_map.py", "Embedding map", "🗺️"),
         ("pages/7_Train.py", "Train", "🏋️")]


def nav_menu() -> None:
    from streamlit.errors import StreamlitPageNotFoundError

    try:
        for path, label, icon in PAGES:
            st.page_link(path, label=label, icon=icon)
    except StreamlitPageNotFoundError:  # a page script run on its own (AppTest.from_file on it): no app around it
        return
    st.divider()


def no_dataset_yet() -> None:
    """Empty state of a page opened before any dataset exists: say what to do, link there, stop the page."""
    st.info("There is no dataset yet. Download FER2013 (or another dataset) from Kaggle, or import a folder, a zip "
            "or a `fer2013.csv`, on the Datasets page; this page then works on it.", icon="📭")
    st.page_link("pages/1_Datasets.py", label="Go to Datasets", icon="📥")
    st.stop()


def debug() -> bool:
    """FER_DEBUG=1 shows developer details (server time per view)."""
    return os.environ.get("FER_DEBUG", "") == "1"


def setup_page(title: str, icon: str = "🙂", dataset_picker: bool = True) -> str | None:
    """Call first on every page. Returns the selected dataset name (or None)."""
    st.session_state["_run_started"] = time.perf_counter()
    st.set_page_config(page_title=f"{title} · FER Curation Studio", page_icon=icon, layout="wide")
    names = datasets.list_datasets()
    selected = None
    with st.sidebar:
        nav_menu()
        st.caption(f"FER Curation Studio {fer_core.__version__}")
        if dataset_picker:
            if names:
                if st.session_state.get("dataset") not in names:
                    st.session_state["dataset"] = names[0]
                selected = st.selectbox("Dataset", names, key="dataset", persist_state="session",
                                        help="Every page works on this dataset.")
            else:
                st.info("No dataset yet: download or import one on the Datasets page.")
    from ui.jobs_panel import jobs_panel   # here: it imports this module

    jobs_panel()   # every job of the server, live, on every page
    if err := st.session_state.pop("_override_error", None):   # a failed save, across the rerun its click made
        show_error(err)
    return selected


def page_done() -> None:
    """Record how long this script run took on the server (shown only in debug mode, FER_DEBUG=1)."""
    t0 = st.session_state.get("_run_started")
    if t0 is not None:
        ms = (time.perf_counter() - t0) * 1000
        st.session_state["_last_run_ms"] = ms
        if debug():
            st.caption(f"Server work for this view: {ms:,.0f} ms")


def show_error(exc: BaseException) -> None:
    err = datasets.describe_error(exc)
    st.error(f"**{err.message}**" + (f"\n\n{err.hint}" if err.hint else ""), icon="⚠️")


def show_job_error(err: dict | None) -> None:
    if not err:
        st.error("The job failed.")
        return
    st.error(f"**{err.get('message', 'The job failed.')}**" + (f"\n\n{err['hint']}" if err.get("hint") else ""),
             icon="⚠️")


def _fmt_amount(v: float | None, unit: str) -> str:
    if v is None:
        return "?"
    if unit == "B":
        return f"{v / 2**20:,.1f} MiB"
    return f"{v:,.0f}"


def job_progress_text(js: JobStatus) -> str:
    if js.state == "queued":
        return "queued: waiting for another job on this dataset"
    if js.stage is None:
        return js.state
    txt = f"{js.stage}: {_fmt_amount(js.done, js.unit)}"
    if js.total:
        txt += f" / {_fmt_amount(js.total, js.unit)}"
    if js.message:
        txt += f" — {js.message}"
    return txt


def render_jobs(kind: str | None = None, dataset: str | None = None, key: str = "jobs",
                show_finished: int = 1, on_done_rerun: bool = True) -> None:
    """Progress bars for running jobs (call inside a fragment with run_every)."""
    jm = job_manager()
    jobs = jm.list(kind, dataset, limit=20)
    active = [j for j in jobs if not j.finished]
    # only outcomes newer than every running job: after a reload an old "finished" must not sit above a new run
    newest_active = max((j.created for j in active), default=0.0)
    finished = [j for j in jobs if j.finished and j.created > newest_active][:show_finished]
    seen = st.session_state.setdefault(f"_{key}_seen_running", set())
    for js in active:
        seen.add(js.id)
        cols = st.columns([6, 1])
        with cols[0]:
            st.progress(js.fraction or 0.0, text=f"**{js.kind}** {job_label(js)} — {job_progress_text(js)}")
        with cols[1]:
            if st.button("Cancel", key=f"cancel-{js.id}"):
                jm.cancel(js.id)
                st.rerun()
    for js in finished:
        if js.state == "done":
            st.success(f"{js.kind} {job_label(js)} finished. {js.info.get('summary', '')}", icon="✅")
        elif js.state == "cancelled":
            st.warning(f"{js.kind} {job_label(js)} was cancelled; nothing partial was registered.", icon="⏹️")
        else:
            show_job_error(js.error)
            with st.expander("Job log"):
                st.code(jm.log(js.id) or "(empty)")
    ended = [j.id for j in jobs if j.finished and j.id in seen]   # shown or not: the page reflects its result
    if ended and on_done_rerun:
        seen.difference_update(ended)
        st.rerun(scope="app")


def live(body, kind=None, dataset: str | None = None, every: float = 1.0) -> None:
    """Run ``body`` in a fragment that refreshes every ``every`` s only while a job of ``kind`` (on ``dataset``)
    runs: an idle page does no timer reruns (each costs a script run that competes with the person's slider
    moves on 2 cores; issue 15). When the jobs it watched have ended, one full rerun turns the timer off."""
    active = any_active(kind, dataset)

    def run():
        body()
        if active and not any_active(kind, dataset):
            st.rerun(scope="app")

    st.fragment(run, run_every=every if active else None)()


def live_jobs(kind=None, dataset: str | None = None, key: str = "jobs", every: float = 1.0, **kw) -> None:
    """:func:`render_jobs` under :func:`live`. When a job it showed ends, :func:`render_jobs` reruns the page (its
    result shows), which redraws this without the timer."""
    live(lambda: render_jobs(kind, dataset, key, **kw), kind, dataset, every)


def job_label(js: JobStatus) -> str:
    return f"'{js.dataset}'" if js.dataset else ""


def any_active(kind: str | None = None, dataset: str | None = None) -> bool:
    return bool(job_manager().active(kind, dataset))


def elapsed(t: float) -> str:
    s = int(time.time() - t)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


__all__ = ["setup_page", "job_manager", "render_jobs", "show_error", "no_dataset_yet", "FerError"]
