"""The sidebar's jobs panel (every page; ``setup_page`` draws it) and the time estimates shown before a long job.

The panel lists every queued and running job of the server, whatever its dataset or page: what it is, its
stage and progress, throughput, time left, and a Cancel button; then the jobs that ended in the last ten
minutes. It refreshes itself every two seconds (a fragment), and reruns the page when a job it saw running
ends, so what the job changed (new signals, a finished run) shows at once.
"""

from __future__ import annotations

import time

import streamlit as st

from fer_core import estimates
from fer_core.jobs import JobStatus
from ui.jobs_view import elapsed, job_label, job_manager, job_progress_text

KIND_WORDS = {"download": "Download", "import": "Import", "scan": "Signal scan", "faces": "Face signals",
              "map": "Embedding map", "labels": "Label issues", "export": "Export", "train": "Training run",
              "ab": "Raw-vs-curated A/B"}
RECENT_S = 600


def duration_left(s: float) -> str:
    if s < 60:
        return "under a minute left"
    if s < 90 * 60:
        return f"about {s / 60:.0f} min left"
    return f"about {s / 3600:.1f} h left"


def rate_text(js: JobStatus) -> str:
    ev = js.stages.get(js.stage or "", {})
    ips = (ev.get("extra") or {}).get("images_per_s")
    if ips:
        return f"{ips:,.0f} images/s"
    if not js.rate:
        return ""
    if js.unit == "B":
        return f"{js.rate / 2**20:,.1f} MiB/s"
    return f"{js.rate:,.1f} {js.unit or 'items'}/s" if js.rate < 10 else f"{js.rate:,.0f} {js.unit or 'items'}/s"


def job_title(js: JobStatus) -> str:
    what = KIND_WORDS.get(js.kind, js.kind)
    return f"{what} {job_label(js)}" + (f" ({js.label})" if js.label else "")


def status_line(js: JobStatus) -> str:
    """"32 images/s · about 18 min left · running for 4 min 10 s"."""
    if js.state == "queued":
        return f"queued for {elapsed(js.created)}: waits for another job on this dataset"
    parts = [rate_text(js), duration_left(js.eta_s) if js.eta_s is not None else "", f"running for {elapsed(js.created)}"]
    return " · ".join(p for p in parts if p)


def jobs_panel() -> None:
    # every 2 s while a job runs; every 10 s when idle (a job started in another tab still shows up), so an idle
    # page does not rerun under the person's slider moves every 2 s
    every = st.session_state["_jobs_panel_every"] = 2.0 if job_manager().active() else 10.0
    with st.sidebar:
        st.fragment(_panel, run_every=every)()


def _panel() -> None:
    jm = job_manager()
    jobs = jm.list(limit=30)
    active = [j for j in jobs if not j.finished]
    recent = [j for j in jobs if j.finished and time.time() - (j.updated or j.created) < RECENT_S][:3]
    seen = st.session_state.setdefault("_jobs_panel_seen", set())
    if active and st.session_state.get("_jobs_panel_every") != 2.0:  # a job started elsewhere: refresh faster
        st.rerun(scope="app")
    with st.container(border=True, key="jobs_panel"):
        st.markdown("**Jobs**" + (f" · {len(active)} running or queued" if active else ""))
        if not active:
            st.caption("No job is running. Long work (scans, face signals, maps, training) runs here in the "
                       "background and survives reloads.")
        for js in active:
            seen.add(js.id)
            st.progress(js.fraction or 0.0, text=f"**{job_title(js)}** — {job_progress_text(js)}")
            st.caption(status_line(js))
            if st.button("Cancel", key=f"jp-cancel-{js.id}", help="Stop this job; nothing partial is registered."):
                jm.cancel(js.id)
                st.rerun(scope="app")
        for js in recent:
            icon = {"done": "✅", "cancelled": "⏹️"}.get(js.state, "⚠️")
            word = {"done": "finished", "cancelled": "was cancelled"}.get(js.state, "failed")
            st.caption(f"{icon} {job_title(js)} {word} {elapsed(js.updated or js.created)} ago")
    ended = [j.id for j in jobs if j.finished and j.id in seen]
    if ended:   # the page shows what the job changed (new signals, a finished run, an export)
        seen.difference_update(ended)
        st.rerun(scope="app")


# ---- estimates before a job starts ---------------------------------------------------------------------------

def estimate_caption(est: estimates.Estimate | None, upper: bool = False, what: str = "", where=None) -> None:
    """One caption next to a Start button: "Estimated: about 40 min at the rate measured here on 24 Nov 2026"."""
    if est is None:
        return
    txt = est.text()
    if upper:
        txt = txt.replace("about", "up to about", 1) + "; early stopping may end it sooner"
    (where or st).caption(f"⏱️ Estimated{f' ({what})' if what else ''}: {txt}.")
