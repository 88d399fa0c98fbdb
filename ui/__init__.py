"""Streamlit helpers shared by app.py and pages/ (UI only; all logic lives in fer_core)."""
