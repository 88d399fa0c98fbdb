"""Review ergonomics shared by the Review and Embedding map pages: keyboard shortcuts that press the page's own
buttons, and a confirmation before a bulk change of many images.

Shortcuts: Streamlit's ``st.button(shortcut=...)`` reserves R (rerun) and C, and ignores keys typed while a
checkbox has the focus, which is where the focus is after ticking an image. So one small listener (installed
once per browser tab) maps a key to a CSS selector and clicks the first visible match: the page declares
its keys in a hidden element each run, and keys do nothing on pages that declare none. A key pressed while
the run started by the last tick is still going presses the button once that run has enabled it. Keys typed
in a text field, a select box, a slider or with a modifier are left alone, as are all keys while a dialog
is open.
"""

from __future__ import annotations

import html
import json

import streamlit as st

from ui.curation import set_override

BULK_CONFIRM_AT = 100   # a change of this many images or more is confirmed first (a dialog naming the count)

_LISTENER = """<script>
(() => {
  if (window.__ferKeys) return;
  window.__ferKeys = true;
  const TEXT = /^(text|search|number|password|email|url|tel|date|time)$/i;
  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || e.repeat) return;
    if (document.querySelector('[role="dialog"]')) return;
    const t = e.target;
    if (t && t.closest && (t.isContentEditable || /^(TEXTAREA|SELECT)$/.test(t.tagName) ||
        (t.tagName === 'INPUT' && TEXT.test(t.type || 'text')) ||
        t.closest('[role="slider"],[role="combobox"],[role="listbox"],[role="tab"],[role="spinbutton"]'))) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const find = (sel) => Array.from(document.querySelectorAll(sel)).filter((el) => el.offsetParent !== null)[0];
    for (const box of document.querySelectorAll('.fer-keys')) {
      const sel = JSON.parse(box.dataset.keys || '{}')[key];
      if (!sel || !find(sel)) continue;
      e.preventDefault();
      e.stopImmediatePropagation();  // the key is the page's: Streamlit's own R (rerun) does not also fire
      // a button still disabled because the run started by the last tick has not finished: wait for that run
      const t0 = Date.now();
      const press = () => {
        const el = find(sel);
        if (el && !el.disabled) { el.click(); return; }
        const app = document.querySelector('[data-testid="stApp"]');
        const busy = app && app.dataset.testScriptState !== 'notRunning';
        if (Date.now() - t0 < 400 || (busy && Date.now() - t0 < 15000)) setTimeout(press, 50);
      };
      press();
      return;
    }
  }, true);
})();
</script>"""


def button_selector(key: str) -> str:
    """The CSS selector of the button a widget ``key`` names (Streamlit marks its container ``st-key-<key>``)."""
    return ".st-key-" + "".join(c if c.isalnum() or c in "_-" else "-" for c in key.strip()) + " button"


def shortcuts(keys: dict[str, str]) -> None:
    """Declare this run's keyboard shortcuts: key (``"k"``, ``"1"``, ``"ArrowRight"``) → widget key of the
    button it presses."""
    data = html.escape(json.dumps({k: button_selector(v) for k, v in keys.items()}), quote=True)
    st.html(f'<div class="fer-keys" data-keys="{data}" hidden></div>{_LISTENER}', unsafe_allow_javascript=True)


_PENDING = "_bulk_pending"
_VERBS = {"reject": "Reject", "keep": "Keep", "clear": "Clear the overrides of", "relabel": "Relabel"}


def bulk_override(name: str, page: str, ids, action: str, label: str | None = None, what: str = "",
                  clear_keys=()) -> None:
    """Apply a manual decision to ``ids``; from BULK_CONFIRM_AT images on, ask first. ``what`` names the images
    in the question ("the lasso selection"); ``clear_keys`` are session keys (e.g. tick boxes) dropped once it
    is applied. Call :func:`bulk_confirmation` with the same ``page`` later in the run (it asks)."""
    ids = list(ids)
    if len(ids) >= BULK_CONFIRM_AT:
        st.session_state[_PENDING] = {"name": name, "page": page, "ids": ids, "action": action, "label": label,
                                      "what": what, "clear_keys": list(clear_keys)}
        return
    if set_override(name, ids, action, label=label):
        for k in clear_keys:
            st.session_state.pop(k, None)
        st.rerun()


def _dismissed():
    st.session_state.pop(_PENDING, None)


@st.dialog("Change many images?", on_dismiss=_dismissed)
def _confirm(p: dict) -> None:
    n = len(p["ids"])
    verb = _VERBS[p["action"]] + (f" as {p['label']}" if p["action"] == "relabel" else "")
    st.markdown(f"{verb} **{n:,} images**{' — ' + p['what'] if p['what'] else ''}?")
    st.caption("Each becomes a manual override (saved at once). *Undo my last action* on the Review page "
               "reverts all of them in one step.")
    c1, c2 = st.columns(2)
    if c1.button(f"{verb} {n:,} images", type="primary", key="bulk_yes"):
        st.session_state.pop(_PENDING, None)
        if set_override(p["name"], p["ids"], p["action"], label=p["label"]):
            for k in p["clear_keys"]:
                st.session_state.pop(k, None)
        st.rerun()
    if c2.button("Cancel", key="bulk_no"):
        st.session_state.pop(_PENDING, None)
        st.rerun()


def bulk_confirmation(name: str, page: str) -> None:
    """Show the pending bulk change's question (once per run, after the page's bulk buttons)."""
    p = st.session_state.get(_PENDING)
    if p is not None and (p["name"], p["page"]) != (name, page):   # left unanswered for another dataset or
        st.session_state.pop(_PENDING, None)                       # page: nothing is applied
        p = None
    if p is not None:
        _confirm(p)
