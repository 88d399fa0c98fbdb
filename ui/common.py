"""Shared page setup: page config, sidebar dataset picker, job manager, job progress panel."""

from __future__ import annotations

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


def setup_page(title: str, icon: str = "🙂", dataset_picker: bool = True) -> str | None:
    """Call first on every page. Returns the selected dataset name (or None)."""
    st.session_state["_run_started"] = time.perf_counter()
    st.set_page_config(page_title=f"{title} · FER Curation Studio", page_icon=icon, layout="wide")
    names = datasets.list_datasets()
    selected = None
    with st.sidebar:
        st.caption(f"FER Curation Studio {fer_core.__version__}")
        if dataset_picker:
            if names:
                if st.session_state.get("dataset") not in names:
                    st.session_state["dataset"] = names[0]
                selected = st.selectbox("Dataset", names, key="dataset", persist_state="session",
                                        help="Every page works on this dataset.")
            else:
                st.info("No dataset yet: download or import one on the Datasets page.")
    return selected


def page_done() -> None:
    """Record (and show, discreetly) how long this script run took on the server."""
    t0 = st.session_state.get("_run_started")
    if t0 is not None:
        ms = (time.perf_counter() - t0) * 1000
        st.session_state["_last_run_ms"] = ms
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
    finished = [j for j in jobs if j.finished][:show_finished]
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
        if js.id in seen and on_done_rerun:
            seen.discard(js.id)
            st.rerun(scope="app")


def job_label(js: JobStatus) -> str:
    return f"'{js.dataset}'" if js.dataset else ""


def any_active(kind: str | None = None, dataset: str | None = None) -> bool:
    return bool(job_manager().active(kind, dataset))


def elapsed(t: float) -> str:
    s = int(time.time() - t)
    return f"{s // 60} min {s % 60} s" if s >= 60 else f"{s} s"


__all__ = ["setup_page", "job_manager", "render_jobs", "show_error", "FerError"]
