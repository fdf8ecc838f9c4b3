/* evotune dashboard: several studies on one convergence plot (GET /compare?studies=1,2,3). */
(function () {
  "use strict";
  const { h, us, duration, shapeLabel } = Evo;
  const MAX_STUDIES = 8;
  const ids = (new URLSearchParams(location.search).get("studies") || "")
    .split(",").map(Number).filter((n) => Number.isInteger(n) && n > 0).slice(0, MAX_STUDIES);

  async function okTrials(id) {
    const trials = [];
    for (let offset = 0; ; offset += 2000) {
      const page = await Evo.getJSON(`/v1/studies/${id}/trials?status=ok&limit=2000&offset=${offset}`);
      trials.push(...page.items);
      if (trials.length >= page.total || !page.items.length) return trials;
    }
  }

  function bestSoFar(points) {
    const out = [];
    let best = Infinity;
    for (const p of points) if (p.y < best) { best = p.y; out.push({ x: p.x, y: best }); }
    return out;
  }

  async function load() {
    if (!ids.length) throw new Error("no studies chosen: open /compare?studies=ID,ID,…");
    const studies = await Promise.all(ids.map((id) => Evo.getJSON(`/v1/studies/${id}`)));
    const trials = await Promise.all(ids.map(okTrials));
    const byNumber = [];
    const byTime = [];
    const legend = document.getElementById("legend");
    legend.textContent = "";
    studies.forEach((s, i) => {
      const good = trials[i].filter((t) => t.p50_us !== null).sort((a, b) => a.number - b.number);
      const last = s.trials ? s.trials - 1 : 0;
      byNumber.push({ type: "step", series: i, data: bestSoFar(good.map((t) => ({ x: t.number, y: t.p50_us }))), extendTo: last });
      const start = Date.parse(s.created_at);
      const timed = good.filter((t) => t.finished_at)
        .map((t) => ({ x: (Date.parse(t.finished_at) - start) / 1000, y: t.p50_us })).sort((a, b) => a.x - b.x);
      byTime.push({ type: "step", series: i, data: bestSoFar(timed) });
      legend.appendChild(h("span", { class: "entry", dataset: { study: s.id } },
        h("span", { class: `swatch series-${i % 8}` }),
        h("a", { href: `/studies/${s.id}` }, `#${s.id}`),
        ` ${s.strategy} · seed ${s.seed} · ${shapeLabel(s.shape)} · ${s.environment.gpu} · best ${us(s.best_p50_us)}`));
    });
    document.getElementById("title").textContent = `Compare ${studies.length} studies`;
    EvoPlot.chart(document.getElementById("cmp-trials"), {
      x: { label: "trial number", integer: true }, y: { kind: "auto", label: "best p50 µs" },
      layers: byNumber, emptyText: "no ok trial yet",
    });
    EvoPlot.chart(document.getElementById("cmp-time"), {
      x: { label: "wall time since start (m:ss)", format: duration }, y: { kind: "auto", label: "best p50 µs" },
      layers: byTime, emptyText: "no ok trial yet",
    });
    Evo.showError(null);
    const running = studies.some((s) => s.state === "running");
    Evo.setLive(running, Evo.refreshMs());
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    return running;
  }

  Evo.poll(load, Evo.refreshMs());
})();
