/* evotune dashboard: one study (GET /studies/{id}); refreshed while the study runs. */
(function () {
  "use strict";
  const { h, us, when, duration, shapeLabel, configText, stateBadge, statusBadge } = Evo;
  const studyId = Number(document.body.dataset.study);
  const TRIAL_PAGE = 2000;
  const TABLE_ROWS = 500;
  const ui = { sort: { key: "number", dir: 1 }, status: "", generation: "", text: "", selected: null };
  let latest = { detail: null, trials: [] };
  const held = new Map(); // trial number -> trial: what this page has fetched so far

  /* The trials numbered above `after` (all of them when it is null), page by page. */
  async function fetchTrials(after) {
    const trials = [];
    const since = after === null ? "" : `&after=${after}`;
    for (let offset = 0; ; offset += TRIAL_PAGE) {
      const page = await Evo.getJSON(`/v1/studies/${studyId}/trials?limit=${TRIAL_PAGE}&offset=${offset}${since}`);
      trials.push(...page.items);
      if (trials.length >= page.total || !page.items.length) return trials;
    }
  }

  /* A live view asks only for what may have changed: the trials after the last one held,
   * and again those from the first one still running (a running trial finishes in place). */
  function cursor() {
    if (!held.size) return null;
    let last = -1;
    let firstRunning = Infinity;
    for (const t of held.values()) {
      last = Math.max(last, t.number);
      if (t.status === "running") firstRunning = Math.min(firstRunning, t.number);
    }
    return Math.min(last, firstRunning - 1);
  }

  /* Same number of trials but other counts by status: something changed that the cursor
   * cannot see (a trial re-run in place), so the next step reads everything again. */
  function drifted(detail) {
    if (detail.trials !== held.size) return false;
    const counts = {};
    for (const t of held.values()) counts[t.status] = (counts[t.status] || 0) + 1;
    return Object.keys({ ...counts, ...detail.status_counts })
      .some((k) => (counts[k] || 0) !== (detail.status_counts[k] || 0));
  }

  async function refreshTrials(detail) {
    const after = cursor();
    let fresh = await fetchTrials(after);
    if (after !== null) {
      for (const t of fresh) held.set(t.number, t);
      if (!drifted(detail)) {
        document.body.dataset.lastFetch = `after ${after}: ${fresh.length}`;
        return;
      }
      fresh = await fetchTrials(null);
    }
    held.clear();
    for (const t of fresh) held.set(t.number, t);
    document.body.dataset.fullLoads = String(Number(document.body.dataset.fullLoads || 0) + 1);
    document.body.dataset.lastFetch = `all: ${fresh.length}`;
  }

  const ok = (t) => t.status === "ok" && t.p50_us !== null;
  const trialTitle = (t) => `#${t.number} gen ${t.generation} · ${us(t.p50_us)}\n${configText(t.config)}`;

  // --- summary -------------------------------------------------------------------------------

  function card(label, value, cls) {
    return h("div", { class: "card " + (cls || "") }, h("div", { class: "k" }, label), h("div", { class: "v" }, value));
  }

  function renderSummary(d) {
    document.getElementById("title").textContent = `Study #${d.id} · ${d.kernel} · ${shapeLabel(d.shape)}`;
    document.title = `evotune · study ${d.id}`;
    const env = d.environment;
    const done = d.trials - (d.status_counts.running || 0);
    const box = document.getElementById("summary");
    box.textContent = "";
    box.append(
      card("state", stateBadge(d.state)),
      card("strategy", `${d.strategy} · seed ${d.seed}`),
      card("trials", `${done} / ${d.budget}`),
      card("ok", String(d.status_counts.ok || 0)),
      card("best p50", us(d.best_p50_us), "accent"),
      card("GPU", env.gpu),
      card("torch · triton", `${env.torch} · ${env.triton}`),
      card("started", when(d.created_at)),
      card("fingerprint", h("span", { class: "mono" }, env.fingerprint)),
    );
    document.getElementById("dims").textContent =
      Object.entries(d.shape.dims).map(([k, v]) => `${k}=${v}`).join("  ");
    document.getElementById("interp-warning").hidden = !d.interpreted;
    document.getElementById("pending-note").hidden = d.state !== "pending";
  }

  // --- convergence ---------------------------------------------------------------------------

  function bestSoFar(points) {
    const out = [];
    let best = Infinity;
    for (const p of points) {
      if (p.y < best) { best = p.y; out.push({ x: p.x, y: best }); }
    }
    return out;
  }

  function renderConvergence(d, trials) {
    const good = trials.filter(ok).sort((a, b) => a.number - b.number);
    const lastNumber = trials.reduce((m, t) => Math.max(m, t.number), 0);
    const byNumber = good.map((t) => ({ x: t.number, y: t.p50_us, title: trialTitle(t), cls: "pt" }));
    EvoPlot.chart(document.getElementById("conv-trials"), {
      title: "best p50 over trial number",
      x: { label: "trial number", integer: true },
      y: { kind: "auto", label: "p50 µs" },
      layers: [
        { type: "points", cls: "all", data: byNumber },
        { type: "step", cls: "best", data: bestSoFar(byNumber), extendTo: lastNumber },
      ],
      emptyText: "no ok trial yet",
    });

    const start = Date.parse(d.created_at);
    const timed = good.filter((t) => t.finished_at)
      .map((t) => ({ x: (Date.parse(t.finished_at) - start) / 1000, y: t.p50_us, title: trialTitle(t), cls: "pt" }))
      .sort((a, b) => a.x - b.x);
    const lastTime = trials.filter((t) => t.finished_at)
      .reduce((m, t) => Math.max(m, (Date.parse(t.finished_at) - start) / 1000), 0);
    EvoPlot.chart(document.getElementById("conv-time"), {
      title: "best p50 over wall time",
      x: { label: "wall time since start (m:ss)", format: duration },
      y: { kind: "auto", label: "p50 µs" },
      layers: [
        { type: "points", cls: "all", data: timed },
        { type: "step", cls: "best", data: bestSoFar(timed), extendTo: lastTime },
      ],
      emptyText: "no ok trial yet",
    });
  }

  // --- generations and elites ----------------------------------------------------------------

  function renderElites(d, trials) {
    const k = Number(d.settings.elites) > 0 ? Number(d.settings.elites) : 4;
    const gens = new Map();
    for (const t of trials) {
      if (!gens.has(t.generation)) gens.set(t.generation, []);
      gens.get(t.generation).push(t);
    }
    const order = [...gens.keys()].sort((a, b) => a - b);
    const rest = [];
    const elites = [];
    const bestLine = [];
    const body = document.querySelector("#elites-table tbody");
    body.textContent = "";
    for (const g of order) {
      const all = gens.get(g);
      const good = all.filter(ok).sort((a, b) => a.p50_us - b.p50_us);
      good.forEach((t, i) => {
        const point = { x: g, y: t.p50_us, title: trialTitle(t), key: t.id };
        (i < k ? elites : rest).push(Object.assign(point, { cls: i < k ? "pt elite" : "pt" }));
      });
      if (good.length) bestLine.push({ x: g, y: good[0].p50_us });
      body.appendChild(h("tr", {},
        h("td", { class: "num" }, String(g)),
        h("td", { class: "num" }, String(all.length)),
        h("td", { class: "num" }, String(good.length)),
        h("td", { class: "num" }, good.length ? us(good[0].p50_us) : "–"),
        h("td", {}, good.slice(0, k).map((t) =>
          h("div", { class: "mono small", title: JSON.stringify(t.config) }, `#${t.number} ${us(t.p50_us)} · ${configText(t.config)}`)))));
    }
    EvoPlot.chart(document.getElementById("elites"), {
      title: "p50 per generation; elites highlighted",
      x: { kind: "band", categories: order, label: "generation" },
      y: { kind: "auto", label: "p50 µs" },
      layers: [
        { type: "points", cls: "all", data: rest },
        { type: "points", cls: "elite", data: elites },
      ],
      emptyText: "no ok trial yet",
    });
    document.getElementById("elite-k").textContent = String(k);
  }

  // --- p50 against each parameter ------------------------------------------------------------

  function sortValues(values) {
    return values.sort((a, b) => {
      if (typeof a === "number" && typeof b === "number") return a - b;
      return String(a).localeCompare(String(b));
    });
  }

  function renderParameters(d, trials) {
    const good = trials.filter(ok);
    const names = parameterNames(d, trials);
    const ys = good.map((t) => t.p50_us);
    const lo = ys.length ? Math.min(...ys) : undefined;
    const hi = ys.length ? Math.max(...ys) : undefined;
    const grid = document.getElementById("params");
    grid.textContent = "";
    for (const name of names) {
      const values = sortValues([...new Set(trials.filter((t) => name in t.config).map((t) => t.config[name]))]);
      const cell = h("div", { class: "param", dataset: { param: name } }, h("h4", {}, name));
      const plot = h("div", {});
      cell.appendChild(plot);
      grid.appendChild(cell);
      EvoPlot.chart(plot, {
        width: 300, height: 190, margin: { left: 50, bottom: 30 },
        x: { kind: "band", categories: values },
        y: { kind: "auto", min: lo, max: hi },
        layers: [{
          type: "points", cls: "all", r: 2.5,
          data: good.filter((t) => name in t.config)
            .map((t) => ({ x: t.config[name], y: t.p50_us, title: trialTitle(t), key: t.id, cls: "pt" })),
        }],
        emptyText: "no ok trial sets it",
      });
    }
  }

  // --- failures ------------------------------------------------------------------------------

  function renderFailures(d) {
    const items = Object.entries(d.status_counts)
      .sort((a, b) => (a[0] === "ok" ? -1 : b[0] === "ok" ? 1 : b[1] - a[1]))
      .map(([status, count]) => ({ label: status, value: count, cls: `status-${status}`,
        title: `${count} trial(s) ${status}` }));
    EvoPlot.bars(document.getElementById("failures"), items, { width: 420 });
    const failed = Object.entries(d.status_counts)
      .filter(([s]) => s !== "ok" && s !== "running").reduce((n, [, c]) => n + c, 0);
    document.getElementById("failure-share").textContent =
      d.trials ? `${failed} of ${d.trials} trials failed (${((100 * failed) / d.trials).toFixed(0)}%)` : "";
  }

  // --- best config ---------------------------------------------------------------------------

  function renderBest(d) {
    const pre = document.getElementById("best-json");
    const note = document.getElementById("best-note");
    if (d.published_best) {
      pre.textContent = JSON.stringify(d.published_best.config, null, 2);
      note.textContent = `published for serving · trial ${d.published_best.trial_id} · p50 ${us(d.published_best.p50_us)}` +
        (d.published_best.shootout_p50_us !== null ? ` · shoot-out ${us(d.published_best.shootout_p50_us)}` : "") +
        (d.published_best.tflops !== null ? ` · ${EvoPlot.fmt(d.published_best.tflops)} TFLOPS` : "");
    } else if (d.best_trial) {
      pre.textContent = JSON.stringify(d.best_trial.config, null, 2);
      note.textContent = `fastest ok trial so far · #${d.best_trial.number} · p50 ${us(d.best_trial.p50_us)} (not published)`;
    } else {
      pre.textContent = "{}";
      note.textContent = "no ok trial yet";
    }
  }

  async function copyBest() {
    const text = document.getElementById("best-json").textContent;
    const button = document.getElementById("copy-best");
    try {
      await navigator.clipboard.writeText(text);
    } catch (e) {
      // Without the async clipboard (plain http on a remote host): select, then copy.
      const range = document.createRange();
      range.selectNodeContents(document.getElementById("best-json"));
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      document.execCommand("copy");
    }
    button.textContent = "copied";
    setTimeout(() => { button.textContent = "copy"; }, 1500);
  }

  // --- trial table ---------------------------------------------------------------------------

  const COLUMNS = [
    { key: "number", label: "#", num: true },
    { key: "generation", label: "gen", num: true },
    { key: "status", label: "status" },
    { key: "p50_us", label: "p50 µs", num: true },
    { key: "p20_us", label: "p20 µs", num: true },
    { key: "p80_us", label: "p80 µs", num: true },
    { key: "max_error", label: "max err", num: true },
    { key: "compile_s", label: "compile s", num: true },
    { key: "operator", label: "operator" },
    { key: "config", label: "config" },
    { key: "error", label: "error" },
  ];

  function cellValue(t, key) {
    if (key === "config") return configText(t.config);
    return t[key];
  }

  function compare(a, b, key) {
    const va = cellValue(a, key);
    const vb = cellValue(b, key);
    const na = va === null || va === undefined;
    const nb = vb === null || vb === undefined;
    if (na || nb) return na && nb ? 0 : na ? 1 : -1; // blanks last, whatever the direction
    if (typeof va === "number" && typeof vb === "number") return (va - vb) * ui.sort.dir;
    return String(va).localeCompare(String(vb)) * ui.sort.dir;
  }

  function renderTableHead() {
    const row = document.querySelector("#trials thead tr");
    row.textContent = "";
    for (const col of COLUMNS) {
      const mark = ui.sort.key === col.key ? (ui.sort.dir > 0 ? " ▲" : " ▼") : "";
      row.appendChild(h("th", {
        class: (col.num ? "num " : "") + "sortable", dataset: { key: col.key },
        "aria-sort": ui.sort.key === col.key ? (ui.sort.dir > 0 ? "ascending" : "descending") : "none",
        onclick: () => {
          ui.sort = { key: col.key, dir: ui.sort.key === col.key ? -ui.sort.dir : 1 };
          renderTable();
        },
      }, col.label + mark));
    }
  }

  function fillSelect(id, values, current) {
    const select = document.getElementById(id);
    const keep = current;
    select.textContent = "";
    select.appendChild(h("option", { value: "" }, "all"));
    for (const v of values) select.appendChild(h("option", { value: String(v) }, String(v)));
    select.value = values.map(String).includes(keep) ? keep : "";
  }

  function renderTable() {
    const trials = latest.trials;
    fillSelect("f-status", [...new Set(trials.map((t) => t.status))].sort(), ui.status);
    fillSelect("f-gen", [...new Set(trials.map((t) => t.generation))].sort((a, b) => a - b), ui.generation);
    const text = ui.text.toLowerCase();
    const rows = trials.filter((t) =>
      (!ui.status || t.status === ui.status) &&
      (ui.generation === "" || String(t.generation) === ui.generation) &&
      (!text || `${configText(t.config)} ${t.error || ""} ${t.operator} ${t.config_hash}`.toLowerCase().includes(text)))
      .sort((a, b) => compare(a, b, ui.sort.key) || a.number - b.number);
    renderTableHead();
    const body = document.querySelector("#trials tbody");
    body.textContent = "";
    for (const t of rows.slice(0, TABLE_ROWS)) {
      body.appendChild(h("tr", {
        class: ui.selected === t.id ? "selected" : "", dataset: { trial: t.id },
        onclick: () => { ui.selected = t.id; renderSelected(); renderTable(); },
      },
      h("td", { class: "num" }, String(t.number)),
      h("td", { class: "num" }, String(t.generation)),
      h("td", {}, statusBadge(t.status)),
      h("td", { class: "num" }, EvoPlot.fmt(t.p50_us)),
      h("td", { class: "num" }, EvoPlot.fmt(t.p20_us)),
      h("td", { class: "num" }, EvoPlot.fmt(t.p80_us)),
      h("td", { class: "num" }, t.max_error === null ? (t.status === "wrong_result" ? "∞/NaN" : "–") : t.max_error.toExponential(1)),
      h("td", { class: "num" }, EvoPlot.fmt(t.compile_s)),
      h("td", {}, t.operator),
      h("td", { class: "mono small" }, configText(t.config)),
      h("td", { class: "small err", title: t.error || "" }, t.error ? t.error.slice(0, 60) : "")));
    }
    document.getElementById("table-count").textContent =
      `${Math.min(rows.length, TABLE_ROWS)} shown of ${rows.length} matching (${trials.length} trials)`;
  }

  function renderSelected() {
    const box = document.getElementById("selected");
    const t = latest.trials.find((x) => x.id === ui.selected);
    box.hidden = !t;
    if (t) document.getElementById("selected-json").textContent = JSON.stringify(t, null, 2);
  }

  // --- load and refresh ----------------------------------------------------------------------

  function parameterNames(d, trials) {
    const seen = new Set();
    for (const t of trials) for (const key of Object.keys(t.config)) seen.add(key);
    const names = d.parameters.filter((p) => seen.has(p));
    for (const key of seen) if (!names.includes(key)) names.push(key);
    return names;
  }

  async function load() {
    const detail = await Evo.getJSON(`/v1/studies/${studyId}`);
    await refreshTrials(detail);
    const trials = [...held.values()].sort((a, b) => a.number - b.number);
    latest = { detail, trials };
    renderSummary(detail);
    renderConvergence(detail, trials);
    renderElites(detail, trials);
    renderParameters(detail, trials);
    EvoParallel.draw(document.getElementById("parallel"), parameterNames(detail, trials), trials);
    await EvoImportance.show(studyId, detail.status_counts.ok || 0);
    renderFailures(detail);
    renderBest(detail);
    renderTable();
    renderSelected();
    Evo.showError(null);
    const running = detail.state === "running";
    Evo.setLive(running, Evo.refreshMs());
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    return running;
  }

  document.getElementById("copy-best").addEventListener("click", copyBest);
  document.getElementById("f-status").addEventListener("change", (e) => { ui.status = e.target.value; renderTable(); });
  document.getElementById("f-gen").addEventListener("change", (e) => { ui.generation = e.target.value; renderTable(); });
  document.getElementById("f-text").addEventListener("input", (e) => { ui.text = e.target.value; renderTable(); });
  Evo.poll(load, Evo.refreshMs());
})();
