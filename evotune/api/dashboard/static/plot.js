/* evotune dashboard: a small SVG plotting library (scatter, step lines, bars). No dependencies.
 *
 * EvoPlot.chart(target, spec) draws axes and layers into a fresh <svg> inside `target`:
 *   spec.x / spec.y: {kind: "linear" | "log" | "band" | "auto", label, categories (band),
 *                     format (tick text), integer (linear ticks on whole numbers)}
 *   spec.layers: [{type: "points" | "step" | "line", cls, series (a colour 0..7), data: [{x, y, title, cls}]}]
 * Every <svg> carries data-points: the number of point marks drawn (the browser test reads it).
 */
(function (global) {
  "use strict";

  const NS = "http://www.w3.org/2000/svg";

  function el(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value !== undefined && value !== null) node.setAttribute(key, String(value));
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(value) {
    if (value === null || value === undefined || !isFinite(value)) return "–";
    const abs = Math.abs(value);
    if (abs >= 1e6) return (value / 1e6).toFixed(abs >= 1e7 ? 0 : 1) + "M";
    if (abs >= 1e4) return (value / 1e3).toFixed(abs >= 1e5 ? 0 : 1) + "k";
    if (abs >= 100) return value.toFixed(0);
    if (abs >= 10) return value.toFixed(1);
    if (abs >= 1) return value.toFixed(2);
    if (abs === 0) return "0";
    return value.toPrecision(2);
  }

  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const unit = raw / power;
    const nice = unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10;
    return nice * power;
  }

  function linearTicks(lo, hi, count, integer) {
    if (hi === lo) return [lo];
    let step = niceStep(hi - lo, count);
    if (integer) step = Math.max(1, Math.round(step));
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
      ticks.push(Math.abs(t) < step * 1e-9 ? 0 : t);
    }
    return ticks;
  }

  function logTicks(lo, hi) {
    const ticks = [];
    for (let p = Math.floor(Math.log10(lo)); p <= Math.ceil(Math.log10(hi)); p++) {
      for (const m of [1, 2, 5]) {
        const t = m * Math.pow(10, p);
        if (t >= lo * 0.999 && t <= hi * 1.001) ticks.push(t);
      }
    }
    return ticks.length >= 2 ? ticks : linearTicks(lo, hi, 4, false);
  }

  /* A scale maps data to pixels along [r0, r1]; `band` places categories at slot centres. */
  function makeScale(axis, values, r0, r1) {
    const kind = axis.kind || "linear";
    if (kind === "band") {
      const cats = axis.categories || [];
      const slot = (r1 - r0) / Math.max(1, cats.length);
      const index = new Map(cats.map((c, i) => [JSON.stringify(c), i]));
      return {
        kind,
        slot,
        map: (v) => r0 + slot * ((index.get(JSON.stringify(v)) ?? 0) + 0.5),
        ticks: () => cats,
        text: (v) => String(v),
      };
    }
    const finite = values.filter((v) => v !== null && isFinite(v));
    let lo = axis.min ?? (finite.length ? Math.min(...finite) : 0);
    let hi = axis.max ?? (finite.length ? Math.max(...finite) : 1);
    let useLog = kind === "log" || (kind === "auto" && lo > 0 && hi / lo > 8);
    if (useLog && lo <= 0) useLog = false;
    if (useLog) {
      lo = lo / 1.15;
      hi = hi * 1.15;
      const a = Math.log(lo);
      const b = Math.log(hi);
      return {
        kind: "log",
        map: (v) => r0 + ((Math.log(v) - a) / (b - a)) * (r1 - r0),
        ticks: () => logTicks(lo, hi),
        text: axis.format || fmt,
      };
    }
    if (hi === lo) {
      lo -= Math.abs(lo) * 0.1 || 1;
      hi += Math.abs(hi) * 0.1 || 1;
    } else if (axis.min === undefined || axis.max === undefined) {
      const pad = (hi - lo) * 0.06;
      if (axis.min === undefined) lo -= pad;
      if (axis.max === undefined) hi += pad;
    }
    return {
      kind: "linear",
      map: (v) => r0 + ((v - lo) / (hi - lo)) * (r1 - r0),
      ticks: () => linearTicks(lo, hi, axis.ticks || 5, axis.integer),
      text: axis.format || (axis.integer ? (v) => String(Math.round(v)) : fmt),
    };
  }

  function jitter(key, width) {
    // Deterministic jitter (a hash of the key), so a refresh does not make points dance.
    let h = 2166136261;
    const s = String(key);
    for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
    return (((h >>> 0) % 1000) / 1000 - 0.5) * width;
  }

  function chart(target, spec) {
    const width = spec.width || 640;
    const height = spec.height || 260;
    const m = Object.assign({ top: 12, right: 14, bottom: 40, left: 58 }, spec.margin || {});
    target.textContent = "";
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`,
      class: "plot " + (spec.cls || ""),
      role: "img",
      "aria-label": spec.title || "",
      "data-points": 0,
    }, target);
    const layers = spec.layers || [];
    const xs = [];
    const ys = [];
    for (const layer of layers) for (const d of layer.data) { xs.push(d.x); ys.push(d.y); }
    if (!xs.length) {
      el("text", { x: width / 2, y: height / 2, class: "empty", "text-anchor": "middle" }, svg)
        .textContent = spec.emptyText || "no data yet";
      return svg;
    }
    const x = makeScale(spec.x || {}, xs, m.left, width - m.right);
    const y = makeScale(spec.y || {}, ys, height - m.bottom, m.top);

    const grid = el("g", { class: "grid" }, svg);
    for (const t of y.ticks()) {
      const py = y.map(t);
      el("line", { x1: m.left, x2: width - m.right, y1: py, y2: py }, grid);
      el("text", { x: m.left - 6, y: py + 4, "text-anchor": "end", class: "tick" }, svg)
        .textContent = y.text(t);
    }
    const xticks = x.ticks();
    const every = Math.max(1, Math.ceil(xticks.length / Math.floor((width - m.left) / 48)));
    xticks.forEach((t, i) => {
      const px = x.map(t);
      if (x.kind !== "band") el("line", { x1: px, x2: px, y1: m.top, y2: height - m.bottom }, grid);
      if (i % every === 0) {
        el("text", { x: px, y: height - m.bottom + 16, "text-anchor": "middle", class: "tick" }, svg)
          .textContent = x.text(t);
      }
    });
    el("line", { x1: m.left, x2: width - m.right, y1: height - m.bottom, y2: height - m.bottom, class: "axis" }, svg);
    el("line", { x1: m.left, x2: m.left, y1: m.top, y2: height - m.bottom, class: "axis" }, svg);
    if (spec.x && spec.x.label) {
      el("text", { x: (m.left + width - m.right) / 2, y: height - 6, "text-anchor": "middle", class: "label" }, svg)
        .textContent = spec.x.label;
    }
    if (spec.y && spec.y.label) {
      const cy = (m.top + height - m.bottom) / 2;
      el("text", { x: 14, y: cy, "text-anchor": "middle", class: "label", transform: `rotate(-90 14 ${cy})` }, svg)
        .textContent = spec.y.label + (y.kind === "log" ? " (log)" : "");
    }

    let points = 0;
    for (const layer of layers) {
      const g = el("g", { class: "layer " + (layer.cls || "") }, svg);
      const data = layer.data.filter((d) => d.y !== null && isFinite(d.y) && (x.kind === "band" || isFinite(d.x)));
      if (layer.type === "step" || layer.type === "line") {
        if (!data.length) continue;
        let path = "";
        data.forEach((d, i) => {
          const px = x.map(d.x);
          const py = y.map(d.y);
          if (i === 0) path += `M${px},${py}`;
          else if (layer.type === "step") path += `H${px}V${py}`;
          else path += `L${px},${py}`;
        });
        if (layer.type === "step" && layer.extendTo !== undefined) path += `H${x.map(layer.extendTo)}`;
        el("path", { d: path, class: "line" + (layer.series !== undefined ? ` series-${layer.series % 8}` : "") }, g);
      } else {
        for (const d of data) {
          const dx = x.kind === "band" ? jitter(d.key ?? d.title ?? points, x.slot * 0.6) : 0;
          const c = el("circle", { cx: x.map(d.x) + dx, cy: y.map(d.y), r: d.r || layer.r || 3, class: d.cls || "" }, g);
          if (d.title) el("title", {}, c).textContent = d.title;
          points++;
        }
      }
    }
    svg.setAttribute("data-points", points);
    return svg;
  }

  /* Horizontal bars: items [{label, value, text (shown instead of the value), cls, title}]. */
  function bars(target, items, spec) {
    spec = spec || {};
    const width = spec.width || 420;
    const row = 24;
    const left = spec.left || 130;
    const height = Math.max(row, items.length * row) + 8;
    target.textContent = "";
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "plot bars", "data-points": items.length }, target);
    const max = Math.max(1, ...items.map((d) => d.value));
    items.forEach((d, i) => {
      const y0 = 4 + i * row;
      el("text", { x: left - 8, y: y0 + 15, "text-anchor": "end", class: "tick" }, svg).textContent = d.label;
      const w = ((width - left - 50) * d.value) / max;
      const rect = el("rect", { x: left, y: y0 + 3, width: Math.max(1, w), height: row - 8, rx: 2, class: "bar " + (d.cls || "") }, svg);
      if (d.title) el("title", {}, rect).textContent = d.title;
      el("text", { x: left + w + 6, y: y0 + 15, class: "tick" }, svg).textContent = d.text ?? String(d.value);
    });
    return svg;
  }

  global.EvoPlot = { chart, bars, fmt, el, makeScale, linearTicks };
})(window);
