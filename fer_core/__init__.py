"""FER Curation Studio engine.

Everything the Streamlit app does goes through this package; it never imports streamlit and every
public function is usable from a notebook or the CLI (``python -m fer_core``).
"""

__version__ = "0.1.0"
