/* evotune dashboard: the best config for given dims, on /overview (GET /v1/best by dims with
   nearest=true). /overview?kernel=K&DIM=V... fills the form and looks up at once: the studies
   page links each shape so. */
(function () {
  "use strict";
  const { h, us, when, shapeLabel, configText } = Evo;
  const form = document.getElementById("lookup");
  const kernelSelect = document.getElementById("lookup-kernel");
  const dimsBox = document.getElementById("lookup-dims");
  const gpuInput = document.getElementById("lookup-gpu");
  const interpretedBox = document.getElementById("lookup-interpreted");
  const answer = document.getElementById("lookup-answer");
  let kernels = [];
  let shapes = [];

  function kernelNamed(name) {
    return kernels.find((k) => k.name === name);
  }

  function dimInput(name, kind, value, known) {
    const attrs = { id: `dim-${name}`, name, dataset: { dim: name } };
    let input;
    if (kind === "bool") {
      input = h("select", attrs, h("option", { value: "" }, ""),
        h("option", { value: "true" }, "true"), h("option", { value: "false" }, "false"));
    } else if (kind === "int") {
      input = h("input", { ...attrs, type: "number", step: "1", size: 8 });
    } else {
      input = h("input", { ...attrs, type: "text", size: 10, list: `dims-${name}` });
    }
    input.value = value === undefined || value === null ? "" : String(value);
    const choices = kind === "str"
      ? h("datalist", { id: `dims-${name}` }, known.map((v) => h("option", { value: String(v) })))
      : null;
    return h("label", { class: "dim" }, `${name} `, input, choices);
  }

  /* One input per dim of the kernel, filled from `values` (a dim left empty is not sent:
     the service then says it is missing, or takes its default). */
  function showDims(kernel, values) {
    dimsBox.textContent = "";
    const ofKernel = shapes.filter((s) => s.kernel === kernel.name);
    for (const [name, kind] of Object.entries(kernel.dims)) {
      const known = [...new Set(ofKernel.map((s) => s.dims[name]).filter((v) => v !== undefined))];
      dimsBox.appendChild(dimInput(name, kind, values[name], known));
    }
  }

  function firstNamedDims(kernel) {
    const named = shapes.find((s) => s.kernel === kernel.name && s.source === "space");
    return named ? named.dims : {};
  }

  function query() {
    const params = new URLSearchParams({ kernel: kernelSelect.value });
    for (const input of dimsBox.querySelectorAll("[data-dim]")) {
      if (input.value !== "") params.set(input.dataset.dim, input.value);
    }
    if (gpuInput.value.trim()) params.set("gpu", gpuInput.value.trim());
    if (interpretedBox.checked) params.set("interpreted", "true");
    return params;
  }

  function fact(label, ...value) {
    return h("div", { class: label === "config" ? "card wide" : "card" },
      h("div", { class: "k" }, label), h("div", { class: "v" }, ...value));
  }

  function showAnswer(status, body) {
    answer.hidden = false;
    answer.textContent = "";
    answer.dataset.status = String(status);
    if (status !== 200) {
      const fields = (body.errors || []).map((e) => `${e.loc[e.loc.length - 1]}: ${e.msg}`);
      answer.dataset.exact = "";
      answer.appendChild(h("div", { class: status === 404 ? "warning" : "error" },
        fields.length ? fields.join("; ") : body.detail || `HTTP ${status}`));
      return;
    }
    answer.dataset.exact = String(body.exact);
    answer.dataset.shape = body.shape.key;
    answer.appendChild(h("p", {}, body.exact
      ? ["Tuned for exactly these dims: ", h("span", { class: "served mono" }, shapeLabel(body.shape))]
      : ["These dims are not tuned; the nearest tuned shape answered: ",
        h("span", { class: "served mono" }, shapeLabel(body.shape)),
        h("span", { class: "muted" }, ` (asked: ${shapeLabel(body.requested)})`)]));
    answer.appendChild(h("div", { class: "cards" },
      fact("config", h("span", { class: "mono small config" }, configText(body.config))),
      fact("p50", us(body.shootout_p50_us || body.p50_us)),
      fact("GPU", body.environment.gpu,
        body.environment.interpreted ? h("span", { class: "badge interp" }, "interpreter") : null),
      fact("study", h("a", { href: `/studies/${body.study_id}` }, `#${body.study_id}`)),
      fact("measured", when(body.measured_at)),
      body.stale ? fact("kernel source", h("span", { class: "badge state-interrupted" }, "stale")) : null));
  }

  async function lookUp() {
    const params = query();
    history.replaceState(null, "", `/overview?${params}`);
    params.set("nearest", "true");
    const response = await fetch(`/v1/best?${params}`, { headers: { Accept: "application/json" } });
    let body = {};
    try { body = await response.json(); } catch (e) { /* not JSON */ }
    showAnswer(response.status, body);
    document.body.dataset.lookups = String(Number(document.body.dataset.lookups || 0) + 1);
  }

  async function init() {
    [kernels, shapes] = await Promise.all([Evo.getJSON("/v1/kernels"), Evo.getJSON("/v1/shapes")]);
    for (const k of kernels) kernelSelect.appendChild(h("option", { value: k.name }, k.name));
    const asked = new URLSearchParams(location.search);
    const kernel = kernelNamed(asked.get("kernel")) || kernels[0];
    if (!kernel) {
      form.hidden = true;
      answer.hidden = false;
      answer.textContent = "No kernel has a search-space file here, so /v1/best has nothing to look up.";
      return;
    }
    kernelSelect.value = kernel.name;
    const fromUrl = asked.has("kernel") && kernelNamed(asked.get("kernel"));
    showDims(kernel, fromUrl ? Object.fromEntries(asked) : firstNamedDims(kernel));
    gpuInput.value = asked.get("gpu") || "";
    interpretedBox.checked = asked.get("interpreted") === "true";
    if (fromUrl) await lookUp();
  }

  kernelSelect.addEventListener("change", () => {
    const kernel = kernelNamed(kernelSelect.value);
    if (kernel) showDims(kernel, firstNamedDims(kernel));
    answer.hidden = true;
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault(); // the page's CSP allows no form submission: fetch instead
    lookUp().catch((e) => Evo.showError(e));
  });
  init().catch((e) => Evo.showError(e));
})();
