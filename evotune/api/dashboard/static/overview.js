/* evotune dashboard: best configs per kernel × shape × GPU (GET /overview, from /v1/overview). */
(function () {
  "use strict";
  const { h, us, when, shapeLabel, configText, ratio } = Evo;

  function speedup(value) {
    if (value === null || value === undefined) return h("span", { class: "muted" }, "–");
    return h("span", { class: "speedup " + (value >= 1 ? "good" : "bad") }, ratio(value));
  }

  function render(rows) {
    const body = document.querySelector("#overview tbody");
    body.textContent = "";
    for (const r of rows) {
      body.appendChild(h("tr", { dataset: { kernel: r.kernel, shape: r.shape.key, gpu: r.gpu } },
        h("td", {}, r.kernel),
        h("td", {}, shapeLabel(r.shape)),
        h("td", {}, r.gpu, r.interpreted ? h("span", { class: "badge interp" }, "interpreter") : null,
          r.environments > 1 ? h("span", { class: "muted small" }, ` (${r.environments} environments)`) : null),
        h("td", { class: "num" }, us(r.p50_us)),
        h("td", { class: "num" }, EvoPlot.fmt(r.tflops)),
        h("td", { class: "num" }, us(r.default_p50_us)),
        h("td", { class: "num default-speedup" }, speedup(r.speedup_over_default)),
        h("td", {}, r.baseline ? `${r.baseline.name} ${us(r.baseline.p50_us)}` : h("span", { class: "muted" }, "not recorded")),
        h("td", { class: "num baseline-speedup" }, speedup(r.baseline ? r.baseline.speedup : null)),
        h("td", {}, h("a", { href: `/studies/${r.study_id}` }, `#${r.study_id}`)),
        h("td", {}, when(r.measured_at)),
        h("td", { class: "mono small" }, configText(r.config))));
    }
    if (!rows.length) {
      body.appendChild(h("tr", {}, h("td", { colspan: 12, class: "empty" },
        "Nothing published yet: `evotune search` publishes the winner of each study.")));
    }
  }

  async function load() {
    const interpreted = document.getElementById("with-interpreted").checked;
    render(await Evo.getJSON(`/v1/overview?interpreted=${interpreted}`));
    Evo.showError(null);
    Evo.setLive(false, 0);
    document.body.dataset.loaded = String(Number(document.body.dataset.loaded || 0) + 1);
    return false;
  }

  document.getElementById("with-interpreted").addEventListener("change", () => Evo.poll(load, 0));
  Evo.poll(load, 0);
})();
