/* evotune dashboard: the studies list (GET /), refreshed while any study runs. */
(function () {
  "use strict";
  const { h, us, when, shapeLabel, stateBadge } = Evo;
  const PAGE = 100;
  let offset = 0;

  const picked = new Set();

  function updateCompare() {
    const link = document.getElementById("compare");
    link.hidden = picked.size < 2;
    link.href = `/compare?studies=${[...picked].join(",")}`;
    link.textContent = `compare ${picked.size} studies`;
  }

  function progress(study) {
    const done = study.trials - (study.status_counts.running || 0);
    const share = Math.min(1, done / Math.max(1, study.budget));
    const abandoned = study.state === "running" && !study.alive;
    return h("div", { class: "progress", title: abandoned
      ? "running, but its search has stopped beating: abandoned (a killed process)"
      : `${done} of ${study.budget} trials finished` },
      h("div", { class: "fill", style: `width:${(share * 100).toFixed(1)}%` }),
      h("span", {}, `${done}/${study.budget}` + (abandoned ? " · no heartbeat" : "")));
  }

  function renderStudies(page) {
    const body = document.querySelector("#studies tbody");
    body.textContent = "";
    for (const s of page.items) {
      const failed = s.trials - (s.status_counts.ok || 0) - (s.status_counts.running || 0);
      body.appendChild(h("tr", { dataset: { study: s.id } },
        h("td", {}, h("input", { type: "checkbox", class: "pick", value: s.id, "aria-label": `compare study ${s.id}`,
          checked: picked.has(s.id), onchange: (e) => { if (e.target.checked) picked.add(s.id); else picked.delete(s.id); updateCompare(); } })),
        h("td", { class: "num" }, h("a", { href: `/studies/${s.id}` }, `#${s.id}`)),
        h("td", {}, s.kernel),
        h("td", {}, h("a", { href: `/studies/${s.id}` }, shapeLabel(s.shape))),
        h("td", {}, s.strategy),
        h("td", {}, stateBadge(s.state), s.interpreted ? h("span", { class: "badge interp" }, "interpreter") : null),
        h("td", {}, s.environment.gpu),
        h("td", {}, progress(s)),
        h("td", { class: "num" }, String(s.status_counts.ok || 0)),
        h("td", { class: "num" }, String(failed)),
        h("td", { class: "num" }, us(s.best_p50_us)),
        h("td", {}, when(s.created_at))));
    }
    if (!page.items.length) {
      body.appendChild(h("tr", {}, h("td", { colspan: 12, class: "empty" },
        "No studies yet. Start one with `evotune search --shape NAME`.")));
    }
    document.getElementById("count").textContent =
      page.total ? `${page.offset + 1}–${page.offset + page.items.length} of ${page.total}` : "0";
    document.getElementById("newer").disabled = page.offset === 0;
    document.getElementById("older").disabled = page.offset + page.items.length >= page.total;
  }

  /* /overview's "best config for these dims", filled with this shape's dims. */
  function lookupLink(shape) {
    const params = new URLSearchParams({ kernel: shape.kernel });
    for (const [k, v] of Object.entries(shape.dims)) params.set(k, String(v));
    return h("a", { class: "lookup-link", href: `/overview?${params}` }, "best config");
  }

  /* Named shapes by name, ad-hoc ones (from --dims or evotune.autotune) by their dims; each
     links to its newest study, and, where /v1/best knows the kernel, to a lookup. */
  function renderShapes(shapes, lookupKernels) {
    const body = document.querySelector("#shapes tbody");
    body.textContent = "";
    for (const s of shapes) {
      const label = shapeLabel(s);
      body.appendChild(h("tr", { dataset: { kernel: s.kernel, shape: s.key } },
        h("td", {}, s.kernel),
        h("td", { class: s.name ? "" : "mono" },
          s.newest_study_id ? h("a", { href: `/studies/${s.newest_study_id}` }, label) : label,
          s.name ? null : [" ", h("span", { class: "badge" }, "ad hoc")]),
        h("td", { class: "mono" }, Object.entries(s.dims).map(([k, v]) => `${k}=${v}`).join(" ")),
        h("td", {}, s.tuned_on.length ? s.tuned_on.join(", ")
          : h("span", { class: "muted" }, s.newest_study_id ? "not tuned on a GPU" : "not tuned")),
        h("td", {}, lookupKernels.has(s.kernel) ? lookupLink(s) : h("span", { class: "muted small" }, "no search space"))));
    }
  }

  async function load() {
    const [page, shapes, kernels] = await Promise.all([
      Evo.getJSON(`/v1/studies?limit=${PAGE}&offset=${offset}`),
      Evo.getJSON("/v1/shapes"),
      Evo.getJSON("/v1/kernels"),
    ]);
    renderStudies(page);
    renderShapes(shapes, new Set(kernels.map((k) => k.name)));
    Evo.showError(null);
    const running = page.items.some((s) => s.state === "running");
    Evo.setLive(running, Evo.refreshMs());
    return running;
  }

  let stop = Evo.poll(load, Evo.refreshMs());
  function page(delta) {
    offset = Math.max(0, offset + delta);
    stop();
    stop = Evo.poll(load, Evo.refreshMs());
  }
  document.getElementById("newer").addEventListener("click", () => page(-PAGE));
  document.getElementById("older").addEventListener("click", () => page(PAGE));
})();
