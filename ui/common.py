"""Shared page setup: page config, the menu, the sidebar dataset picker and jobs panel, errors, the empty state.
The job helpers live in ui.jobs_view (re-exported here for the pages)."""

from __future__ import annotations

import os
import time

import streamlit as st

import fer_core
from fer_core import datasets
from fer_core.errors import FerError
from ui.jobs_view import (any_active, elapsed, job_label, job_manager, job_progress_text, live,  # noqa: F401
                          live_jobs, render_jobs, show_job_error)


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


__all__ = ["setup_page", "job_manager", "render_jobs", "show_error", "no_dataset_yet", "FerError"]
