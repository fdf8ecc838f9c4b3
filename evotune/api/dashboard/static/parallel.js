/* evotune dashboard: parallel coordinates of a study's ok trials (EvoParallel.draw).
 *
 * One vertical axis per parameter, then p50; one polyline per ok trial through its value on
 * each axis, coloured by its p50 quintile (blue fastest .. red slowest). A parameter's values
 * sit at evenly spaced positions in sorted order, labelled as they are (integers stay
 * integers); a trial where a parameter does not apply passes through "n/a" at the bottom.
 * The <svg> carries data-lines (polylines drawn) and data-axes (the browser test reads them).
 */
(function (global) {
  "use strict";
  const { el, fmt, makeScale } = EvoPlot;
  const NA = "n/a";

  function sortValues(values) {
    return values.sort((a, b) => {
      if (typeof a === "number" && typeof b === "number") return a - b;
      return String(a).localeCompare(String(b));
    });
  }

  function quintile(value, sorted) {
    if (sorted.length < 2) return 0;
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (sorted[mid] < value) lo = mid + 1; else hi = mid;
    }
    return Math.min(4, Math.floor((5 * lo) / sorted.length));
  }

  function draw(target, names, trials, spec) {
    spec = spec || {};
    const width = spec.width || 1200;
    const height = spec.height || 320;
    const m = { top: 42, bottom: 22, left: 50, right: 60 };
    target.textContent = "";
    const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, class: "plot parallel", role: "img",
      "aria-label": "parallel coordinates: parameters against p50", "data-lines": 0 }, target);
    const good = trials.filter((t) => t.status === "ok" && t.p50_us !== null);
    // A parameter no ok trial has (a knob of an impl that cannot run at this shape) gets no axis.
    names = names.filter((name) => good.some((t) => name in t.config));
    if (!good.length || !names.length) {
      el("text", { x: width / 2, y: height / 2, class: "empty", "text-anchor": "middle" }, svg)
        .textContent = "no ok trial yet";
      return svg;
    }
    const step = (width - m.left - m.right) / names.length;
    const top = m.top;
    const bottom = height - m.bottom;
    const axes = names.map((name, i) => {
      const present = good.filter((t) => name in t.config).map((t) => t.config[name]);
      const values = sortValues([...new Set(present)]);
      if (present.length < good.length) values.unshift(NA);
      const at = (v) => {
        const index = values.indexOf(v);
        return values.length === 1 ? (top + bottom) / 2 : bottom - ((bottom - top) * index) / (values.length - 1);
      };
      return { name, x: m.left + step * i, values, at };
    });
    const p50s = good.map((t) => t.p50_us);
    const yP50 = makeScale({ kind: "auto" }, p50s, bottom, top);
    const xP50 = m.left + step * names.length;

    // Lines first, axes on top of them.
    const lines = el("g", { class: "lines" }, svg);
    const sorted = [...p50s].sort((a, b) => a - b);
    for (const t of [...good].sort((a, b) => b.p50_us - a.p50_us)) { // fastest drawn last, on top
      const points = axes.map((a) => `${a.x},${a.at(axisValue(t, a.name))}`);
      points.push(`${xP50},${yP50.map(t.p50_us)}`);
      const path = el("path", { d: "M" + points.join("L"), class: `trial q${quintile(t.p50_us, sorted)}`,
        "data-trial": t.id }, lines);
      el("title", {}, path).textContent = `#${t.number} · ${fmt(t.p50_us)} µs\n${Evo.configText(t.config)}`;
    }
    axes.forEach((a, i) => {
      const g = el("g", { class: "axis", "data-param": a.name }, svg);
      el("line", { x1: a.x, x2: a.x, y1: top, y2: bottom, class: "axis-line" }, g);
      // Names alternate between two rows, so long ones on close axes do not overlap.
      el("text", { x: a.x, y: top - (i % 2 ? 10 : 26), "text-anchor": "middle", class: "axis-name" }, g)
        .textContent = a.name;
      for (const v of a.values) {
        el("text", { x: a.x - 5, y: a.at(v) + 4, "text-anchor": "end", class: "tick" }, g).textContent = String(v);
      }
    });
    const g = el("g", { class: "axis", "data-param": "p50_us" }, svg);
    el("line", { x1: xP50, x2: xP50, y1: top, y2: bottom, class: "axis-line" }, g);
    el("text", { x: xP50, y: top - (axes.length % 2 ? 10 : 26), "text-anchor": "middle", class: "axis-name" }, g)
      .textContent = "p50 µs";
    for (const tick of yP50.ticks()) {
      const y = yP50.map(tick);
      if (y < top - 1 || y > bottom + 1) continue;
      el("text", { x: xP50 + 5, y: y + 4, class: "tick" }, g).textContent = yP50.text(tick);
    }
    svg.setAttribute("data-lines", good.length);
    svg.setAttribute("data-axes", axes.length + 1);
    return svg;
  }

  function axisValue(trial, name) {
    return name in trial.config ? trial.config[name] : NA;
  }

  global.EvoParallel = { draw };
})(window);
