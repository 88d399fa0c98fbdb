"""Light views drawn in the page itself (``st.components.v2``: no iframe, no Plotly) for what changes on every
slider move: the montages (an ``<img>`` with a click target per tile), the histogram with its cut lines (one SVG
path per series; a move re-draws only the cut layer) and the sidebar's small bar charts.

Why not Plotly for these (issue 15, ``bench/bench_browser.py``): a Quality slider move spent 200–340 ms of browser
JavaScript in Plotly redrawing five charts (~2,900 DOM changes for the histogram alone) on 2 cores; these views
change a handful of attributes per move. Plotly stays where its interaction is the point (the embedding map's
lasso, the Train page's curves)."""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

_CSS = """
.fer-view { font-family: var(--st-font, sans-serif); font-size: 12px; color: var(--st-text-color, #31333f); }
.fer-view img { display: block; cursor: pointer; image-rendering: auto; max-width: 100%; }
.fer-view svg text { fill: var(--st-text-color, #31333f); font-size: 11px; }
.fer-legend { display: flex; flex-wrap: wrap; gap: 10px; margin-top: 2px; }
.fer-legend span i { display: inline-block; width: 10px; height: 10px; margin-right: 4px; vertical-align: -1px; }
.fer-rows { display: grid; grid-template-columns: max-content 1fr max-content; gap: 3px 6px; align-items: center; }
.fer-rows .bar { display: flex; height: 12px; background: rgba(128,128,128,0.12); }
.fer-rows .bar b { display: block; height: 100%; }
"""

_JS = r"""
const NS = 'http://www.w3.org/2000/svg';
function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}
function niceTicks(lo, hi, n) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / n, mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(+t.toPrecision(12));
  return out;
}
function fmt(v) {
  const a = Math.abs(v);
  if (a >= 1e4) return v.toLocaleString('en-US', {maximumFractionDigits: 0});
  return (+v.toPrecision(3)).toLocaleString('en-US', {maximumFractionDigits: 4});
}

function montage(root, d, trigger) {
  let img = root.querySelector('img');
  if (!img) {
    img = document.createElement('img');
    root.appendChild(img);
    img.addEventListener('click', ev => {
      const t = img._tileAt(ev);
      if (t) img._trigger('clicked', t.id);
    });
    img.addEventListener('mousemove', ev => {
      const t = img._tileAt(ev);
      img.title = t ? t.title : '';
    });
  }
  img._trigger = trigger;                          // this render's, not the first one's
  img._tileAt = ev => {
    const s = img.clientWidth / d.width;          // the image may be shown narrower than its pixels
    const x = ev.offsetX / s, y = ev.offsetY / s;
    const c = Math.floor(x / d.step), r = Math.floor(y / d.step);
    if (x - c * d.step >= d.tile || y - r * d.step >= d.tile || c >= d.ncols) return null;
    return d.tiles[r * d.ncols + c] || null;
  };
  if (img.getAttribute('src') !== d.src) img.setAttribute('src', d.src);
  img.setAttribute('width', d.width);
  img.setAttribute('alt', d.alt || 'montage');
  img.dataset.ids = d.tiles.filter(t => t).map(t => t.id).join(' ');
}

function histogram(root, d) {
  const W = Math.max(320, root.clientWidth || d.width || 800), H = d.height;
  const m = {l: 52, r: 12, t: 22, b: 40};
  const key = JSON.stringify([W, d.edges, d.series, d.logy, d.xticks]);
  let svg = root.querySelector('svg');
  const sx = x => m.l + (x - d.edges[0]) / (d.edges[d.edges.length - 1] - d.edges[0]) * (W - m.l - m.r);
  const ymax = Math.max(1, ...d.series.map(s => Math.max(0, ...s.y)));
  const ty = v => d.logy ? Math.log10(Math.max(v, 0.5)) : v;
  const y0 = d.logy ? Math.log10(0.5) : 0;
  const sy = v => H - m.b - (ty(v) - y0) / (ty(ymax) - y0) * (H - m.t - m.b);
  if (!svg || svg._key !== key) {            // the bars: drawn again only when the data changes
    root.textContent = '';
    svg = el('svg', {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': d.title});
    root.appendChild(svg);
    svg._key = key;
    const bars = el('g', {'class': 'bars'}, svg);
    for (const s of d.series) {
      let p = '';
      s.y.forEach((v, i) => {
        if (v <= 0) return;
        const x0 = sx(d.edges[i]), x1 = sx(d.edges[i + 1]);
        p += `M${x0.toFixed(1)} ${(H - m.b)}V${sy(v).toFixed(1)}H${x1.toFixed(1)}V${H - m.b}Z`;
      });
      el('path', {d: p, fill: s.color, 'fill-opacity': d.series.length > 1 ? 0.6 : 1}, bars);
    }
    const ax = el('g', {'class': 'axes', stroke: '#888', 'stroke-width': 1}, svg);
    el('line', {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b}, ax);
    el('line', {x1: m.l, x2: m.l, y1: m.t, y2: H - m.b}, ax);
    const xt = d.xticks || niceTicks(d.edges[0], d.edges[d.edges.length - 1], 8).map(v => [v, fmt(v)]);
    for (const [v, lab] of xt) {
      el('line', {x1: sx(v), x2: sx(v), y1: H - m.b, y2: H - m.b + 4}, ax);
      el('text', {x: sx(v), y: H - m.b + 15, 'text-anchor': 'middle', stroke: 'none'}, ax).textContent = lab;
    }
    const yt = d.logy ? [1, 10, 100, 1000, 10000, 100000].filter(v => v <= ymax * 1.01) : niceTicks(0, ymax, 4);
    for (const v of yt) {
      el('line', {x1: m.l - 4, x2: m.l, y1: sy(v), y2: sy(v)}, ax);
      el('text', {x: m.l - 6, y: sy(v) + 4, 'text-anchor': 'end', stroke: 'none'}, ax).textContent = fmt(v);
    }
    el('text', {x: (m.l + W - m.r) / 2, y: H - 6, 'text-anchor': 'middle', stroke: 'none'}, ax).textContent = d.xtitle;
    el('text', {x: 12, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle', stroke: 'none',
                transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})`}, ax).textContent = 'images';
    el('g', {'class': 'cuts'}, svg);
    if (d.series.length > 1) {
      const lg = document.createElement('div');
      lg.className = 'fer-legend';
      lg.innerHTML = d.series.map(s => `<span><i style="background:${s.color}"></i>${s.name}</span>`).join('');
      root.appendChild(lg);
    }
  }
  const cuts = svg.querySelector('g.cuts');       // the cut layer: the only part a slider move changes
  cuts.textContent = '';
  const lo = d.edges[0], hi = d.edges[d.edges.length - 1];
  for (const c of d.cuts) {
    const x = sx(Math.min(Math.max(c.x, lo), hi));
    if (c.shade) {
      const xa = c.shade === 'left' ? m.l : x, xb = c.shade === 'left' ? x : W - m.r;
      el('rect', {x: xa, y: m.t, width: Math.max(0, xb - xa), height: H - m.t - m.b, fill: '#d62728',
                  'fill-opacity': 0.08}, cuts);
    }
    el('line', {x1: x, x2: x, y1: m.t, y2: H - m.b, stroke: c.color, 'stroke-width': 2,
                'stroke-dasharray': c.dash ? '5 4' : 'none'}, cuts);
    const side = c.shade || c.side;              // the label sits on the rejected side of its line
    const t = el('text', {x: x + (side === 'left' ? -4 : 4), y: c.dash ? m.t + 12 : m.t - 6,
                          'text-anchor': side === 'left' ? 'end' : 'start', 'class': 'cut-label'}, cuts);
    t.textContent = c.text;
    t.style.fill = c.color;
  }
}

function rows(root, d) {
  const max = Math.max(1, ...d.rows.map(r => r.parts.reduce((a, p) => a + p, 0)));
  const html = d.rows.map(r => {
    const bar = r.parts.map((p, i) => `<b style="width:${(100 * p / max).toFixed(2)}%;background:${d.colors[i]}"
      title="${d.names[i]}: ${p.toLocaleString('en-US')}"></b>`).join('');
    return `<span>${r.label}</span><span class="bar">${bar}</span><span>${r.text}</span>`;
  }).join('');
  if (root._html !== html) {
    root.innerHTML = `<div class="fer-rows">${html}</div>`;
    root._html = html;
  }
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector('div.fer-view');
  if (!root) {
    root = document.createElement('div');
    root.className = 'fer-view';
    parentElement.appendChild(root);
  }
  root.dataset.kind = data.kind;
  if (data.kind === 'montage') montage(root, data, setTriggerValue);
  else if (data.kind === 'histogram') histogram(root, data);
  else if (data.kind === 'rows') rows(root, data);
}
"""

_view = st.components.v2.component("fer_view", css=_CSS, js=_JS, isolate_styles=False)


def montage_view(key: str, src: str, width: int, tile: int, step: int, ncols: int, tiles: list[dict | None],
                 alt: str = "") -> Any:
    """Show a composited montage; returns the id of the tile clicked in this run, else None.

    ``tiles[k]`` is ``{"id": ..., "title": ...}`` for the tile at grid position k (None for an empty place)."""
    res = _view(key=key, data={"kind": "montage", "src": src, "width": int(width), "tile": int(tile), "step": int(step),
                               "ncols": int(ncols), "tiles": tiles, "alt": alt},
                on_clicked_change=lambda: None, width="content", height="content")
    return getattr(res, "clicked", None)


def histogram_view(key: str, edges: np.ndarray, series: list[dict], cuts: list[dict], xtitle: str,
                   xticks: list[tuple[float, str]] | None = None, logy: bool = False, height: int = 320,
                   title: str = "histogram") -> None:
    """Bars per series (``{"name", "y", "color"}``) over ``edges``; ``cuts`` are ``{"x", "text", "color",
    "shade": "left"|"right"|None, "dash": bool}`` in the axis' units."""
    _view(key=key, data={"kind": "histogram", "edges": [float(e) for e in edges], "series": series, "cuts": cuts,
                         "xtitle": xtitle, "xticks": xticks, "logy": bool(logy), "height": int(height),
                         "title": title}, width="stretch", height="content")


def rows_view(key: str, rows: list[dict], names: list[str], colors: list[str]) -> None:
    """Horizontal bars, one row each (``{"label", "parts": [n, ...], "text"}``), parts stacked in ``colors``."""
    _view(key=key, data={"kind": "rows", "rows": rows, "names": names, "colors": colors}, width="stretch",
          height="content")
