"""Jobs in the pages: the one JobManager of the server, progress lines, outcomes, and the fragments that refresh
them only while a job runs. The sidebar panel (ui/jobs_panel.py) and every page's job area use this."""

from __future__ import annotations

import time

import streamlit as st

from fer_core.jobs import JobManager, JobStatus


@st.cache_resource
def job_manager() -> JobManager:
    """One manager per server process: holds the Popen handles of background jobs."""
    return JobManager()


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
