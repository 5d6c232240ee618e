// Plain SVG charts for the dashboard: a line chart (curves over steps) and a scatter (the embedding map).
// No library: every mark is an SVG element built here, so the page needs no build step.
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                   "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
  const UNKNOWN = "#c9c9c9";
  // Popularity buckets, most popular first: a sequential scale rather than unrelated hues.
  const POPULARITY = ["#b2182b", "#ef8a62", "#67a9cf", "#2166ac"];

  function colour(code, scheme) {
    if (code < 0) return UNKNOWN;
    if (scheme === "popularity") return POPULARITY[Math.min(code, POPULARITY.length - 1)];
    if (code < PALETTE.length) return PALETTE[code];
    return `hsl(${Math.round((code * 137.508) % 360)}, 55%, 50%)`;  // golden angle: distinct hues
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    if (parent) parent.appendChild(node);
    return node;
  }

  function text(parent, x, y, content, attrs) {
    const node = el("text", Object.assign({ x, y }, attrs || {}), parent);
    node.textContent = content;
    return node;
  }

  // About `count` round tick values covering [lo, hi].
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }

  function format(v) {
    if (v === 0) return "0";
    const a = Math.abs(v);
    if (a >= 1e4 || a < 1e-3) return v.toExponential(1);
    return String(+v.toPrecision(3));
  }

  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (lo === hi) { lo -= Math.abs(lo) * 0.1 || 1; hi += Math.abs(hi) * 0.1 || 1; }
    return [lo, hi];
  }

  // series: [{name, points: [[x, y], ...]}]; draws axes, one path (and dots) per series, a legend.
  function line(container, series, options) {
    const opts = Object.assign({ xLabel: "step" }, options || {});
    container.replaceChildren();
    const drawn = series.filter((s) => s.points.length > 0);
    if (drawn.length === 0) {
      const p = document.createElement("p");
      p.className = "muted chart-empty";
      p.textContent = opts.empty || "nothing to draw yet";
      container.appendChild(p);
      return null;
    }
    const m = { left: 48, right: 12, top: 30, bottom: 34 };
    // Drawn at the container's own size, so text is as large on the page as in the SVG.
    const W = Math.max(280, container.clientWidth || 560), H = opts.height || 240;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "line-chart", role: "img" }, container);
    const xs = drawn.flatMap((s) => s.points.map((p) => p[0]));
    const ys = drawn.flatMap((s) => s.points.map((p) => p[1]));
    const [x0, x1] = xs.length > 1 && Math.min(...xs) !== Math.max(...xs) ? extent(xs) : [Math.min(...xs) - 1, Math.max(...xs) + 1];
    let [y0, y1] = extent(ys);
    const pad = (y1 - y0) * 0.06; y0 -= pad; y1 += pad;
    const X = (v) => m.left + ((v - x0) / (x1 - x0)) * (W - m.left - m.right);
    const Y = (v) => H - m.bottom - ((v - y0) / (y1 - y0)) * (H - m.top - m.bottom);
    const axes = el("g", { class: "axes" }, svg);
    for (const t of ticks(y0, y1, 4)) {
      el("line", { x1: m.left, x2: W - m.right, y1: Y(t), y2: Y(t), class: "grid" }, axes);
      text(axes, m.left - 6, Y(t) + 4, format(t), { "text-anchor": "end" });
    }
    for (const t of ticks(x0, x1, 6).filter((t) => Number.isInteger(t))) {
      el("line", { x1: X(t), x2: X(t), y1: H - m.bottom, y2: H - m.bottom + 4, class: "tick" }, axes);
      text(axes, X(t), H - m.bottom + 16, String(t), { "text-anchor": "middle" });
    }
    el("line", { x1: m.left, x2: W - m.right, y1: H - m.bottom, y2: H - m.bottom, class: "axis" }, axes);
    text(axes, W - m.right, H - 4, opts.xLabel, { "text-anchor": "end", class: "label" });
    drawn.forEach((s, i) => {
      const c = s.colour || colour(i);
      const d = s.points.map((p, j) => `${j ? "L" : "M"}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`).join("");
      el("path", { d, class: "series", stroke: c, "data-series": s.name }, svg);
      if (s.points.length <= 60) {
        for (const p of s.points) {
          const dot = el("circle", { cx: X(p[0]), cy: Y(p[1]), r: 2.5, fill: c, class: "dot" }, svg);
          el("title", {}, dot).textContent = `${s.name} @ ${p[0]}: ${format(p[1])}`;
        }
      }
    });
    const legend = el("g", { class: "chart-legend" }, svg);
    let lx = m.left + 8;
    drawn.forEach((s, i) => {
      el("rect", { x: lx, y: 6, width: 10, height: 10, rx: 2, fill: s.colour || colour(i) }, legend);
      const label = text(legend, lx + 14, 15, s.name);
      lx += 26 + (label.getComputedTextLength() || 7 * s.name.length);
    });
    return svg;
  }

  // points: {item: [...], x: [...], y: [...], colour: [...]}; equal scale on both axes (PCA distances).
  function scatter(container, points, options) {
    const opts = Object.assign({ onClick: null, scheme: "group" }, options || {});
    container.replaceChildren();
    const W = Math.max(280, container.clientWidth || 520), H = Math.round(Math.min(W * 0.72, 520)), m = 14;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "scatter", role: "img" }, container);
    const [x0, x1] = extent(points.x), [y0, y1] = extent(points.y);
    const scale = Math.min((W - 2 * m) / (x1 - x0), (H - 2 * m) / (y1 - y0));
    const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    const X = (v) => W / 2 + (v - cx) * scale;
    const Y = (v) => H / 2 - (v - cy) * scale;
    el("line", { x1: m, x2: W - m, y1: Y(0), y2: Y(0), class: "origin" }, svg);
    el("line", { x1: X(0), x2: X(0), y1: m, y2: H - m, class: "origin" }, svg);
    const layer = el("g", { class: "points" }, svg);
    const byItem = new Map();
    for (let i = 0; i < points.x.length; i++) {
      const dot = el("circle", {
        cx: X(points.x[i]).toFixed(1), cy: Y(points.y[i]).toFixed(1), r: 3,
        fill: colour(points.colour[i], opts.scheme), "data-item": points.item[i], "data-colour": points.colour[i],
      }, layer);
      el("title", {}, dot).textContent = `item ${points.item[i]}`;
      if (opts.onClick) dot.addEventListener("click", () => opts.onClick(points.item[i]));
      byItem.set(points.item[i], dot);
    }
    const marks = el("g", { class: "marks" }, svg);
    // Ring the given items (e.g. a query's answer) and return how many of them are on the map.
    svg.highlight = function (items) {
      marks.replaceChildren();
      let shown = 0;
      for (const item of items) {
        const dot = byItem.get(item);
        if (!dot) continue;
        shown += 1;
        el("circle", { cx: dot.getAttribute("cx"), cy: dot.getAttribute("cy"), r: 7, class: "ring" }, marks);
      }
      return shown;
    };
    return svg;
  }

  window.Charts = { line, scatter, colour, format };
})();
