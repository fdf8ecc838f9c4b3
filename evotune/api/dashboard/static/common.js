/* evotune dashboard: helpers shared by the pages (JSON fetch, DOM building, formatting). */
(function (global) {
  "use strict";

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      let detail = response.statusText;
      try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
      throw new Error(`${response.status} ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
    }
    return response.json();
  }

  /* h("td", {class: "x"}, "text", childNode, ...): text always goes in as text, never as HTML. */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") node.style.cssText = value; // CSSOM: allowed by the CSP
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function us(value) {
    return value === null || value === undefined ? "–" : EvoPlot.fmt(value) + " µs";
  }

  function when(iso) {
    if (!iso) return "–";
    const d = new Date(iso);
    return d.toISOString().replace("T", " ").slice(0, 19) + " UTC";
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
    seconds = Math.max(0, Math.round(seconds));
    const hh = Math.floor(seconds / 3600);
    const mm = Math.floor((seconds % 3600) / 60);
    const ss = seconds % 60;
    const pad = (n) => String(n).padStart(2, "0");
    return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
  }

  function shapeLabel(shape) {
    if (shape.name) return shape.name;
    return Object.entries(shape.dims).map(([k, v]) => `${k}=${v}`).join(" ");
  }

  function configText(config) {
    return Object.entries(config).map(([k, v]) => `${k}=${v}`).join(" ");
  }

  function stateBadge(state) {
    return h("span", { class: `badge state-${state}` }, state);
  }

  function statusBadge(status) {
    return h("span", { class: `badge status-${status}` }, status);
  }

  /* Poll `fn` every `ms` while it resolves to true; returns a stop function. */
  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    async function tick() {
      let again = false;
      try { again = await fn(); } catch (e) { again = true; showError(e); }
      if (again && !stopped) timer = setTimeout(tick, ms);
    }
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  function showError(error) {
    const box = document.getElementById("error");
    if (!box) return;
    box.hidden = !error;
    box.textContent = error ? `Could not load data: ${error.message || error}` : "";
  }

  function setLive(running, ms) {
    const live = document.getElementById("live");
    if (!live) return;
    live.className = running ? "live on" : "live";
    live.textContent = running
      ? `live · refreshing every ${Math.round(ms / 1000)} s · ${new Date().toLocaleTimeString()}`
      : `updated ${new Date().toLocaleTimeString()}`;
  }

  function refreshMs() {
    const fromQuery = Number(new URLSearchParams(location.search).get("refresh"));
    return fromQuery > 0 ? fromQuery : 3000;
  }

  function ratio(value) {
    return value === null || value === undefined ? "–" : value.toFixed(2) + "×";
  }

  global.Evo = { getJSON, h, us, when, duration, shapeLabel, configText, stateBadge, statusBadge,
    poll, showError, setLive, refreshMs, ratio };
})(window);
