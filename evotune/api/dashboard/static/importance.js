/* evotune dashboard: parameter importance of a study (GET /v1/studies/{id}/importance),
 * as bars; asked again only when the study has new ok trials. */
(function (global) {
  "use strict";
  let shownFor = null;

  async function show(studyId, okTrials) {
    const key = `${studyId}:${okTrials}`;
    if (key === shownFor) return;
    const target = document.getElementById("importance");
    const note = document.getElementById("importance-note");
    const body = await Evo.getJSON(`/v1/studies/${studyId}/importance`);
    shownFor = key;
    const items = body.importances.map((i) => ({
      label: i.param,
      value: i.importance,
      text: `${(100 * i.importance).toFixed(1)}%`,
      cls: "importance",
      title: `${i.param}: ${(100 * i.importance).toFixed(1)}% of the p50's variation`,
    }));
    EvoPlot.bars(target, items, { width: 560, left: 150 });
    const skipped = body.skipped.length ? ` · not assessed: ${body.skipped.join(", ")}` : "";
    note.textContent = (body.note || `${body.evaluator} on ${body.trials} ok trials`) + skipped;
  }

  global.EvoImportance = { show };
})(window);
