"""The dashboard in headless Chromium: plots drawn with the data, table sorts and filters, the
best config copies, a running study refreshes with only its new trials, parallel coordinates,
parameter importance, several studies on one plot, the overview of best configs; nothing is
fetched from outside the app, and no console error (a CSP violation is one) appears.

Needs Debian's `chromium` (or EVOTUNE_CHROMIUM=/path) and `pip install playwright`; skipped
with the reason otherwise. Screenshots go to test-artifacts/ (EVOTUNE_TEST_ARTIFACTS overrides).
EVOTUNE_BROWSER_DB=<url> runs the read-only checks over another database (e.g. real recorded
trials) instead of the sample one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from evotune.api import create_app
from evotune.records import TrialResult, TrialStatus, config_hash
from evotune.storage import open_database, repository
from tests.api.conftest import build_sample_db

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for candidate in (os.environ.get("EVOTUNE_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (path := shutil.which(candidate)):
            return path
    pytest.skip("no chromium binary (apt-get install chromium, or set EVOTUNE_CHROMIUM)")


def _artifacts() -> Path:
    default = Path(__file__).resolve().parents[2] / "test-artifacts"
    folder = Path(os.environ.get("EVOTUNE_TEST_ARTIFACTS", default))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class _Server:
    """uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, url: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(url), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    override = os.environ.get("EVOTUNE_BROWSER_DB")
    if override:
        return override
    # Its own copy: the live-refresh test writes to it.
    return build_sample_db(tmp_path_factory.mktemp("browser") / "browser.db").url


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[_Server]:
    with _Server(db_url) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, server: _Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.base)
    page = context.new_page()
    problems: list[str] = []
    outside: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )
    page.on(
        "request",
        lambda request: (
            None if request.url.startswith(server.base) else outside.append(request.url)
        ),
    )
    yield page
    context.close()
    assert not problems, problems
    assert not outside, f"the dashboard fetched from outside the app: {outside}"


def _json(server: _Server, path: str) -> Any:
    import urllib.request

    with urllib.request.urlopen(server.base + path) as response:
        return json.load(response)


def _biggest_study(server: _Server) -> dict[str, Any]:
    studies = _json(server, "/v1/studies?limit=500")["items"]
    return max(studies, key=lambda s: (s["status_counts"].get("ok", 0), s["trials"]))


def _wait_loaded(page: Any, times: int) -> None:
    # A function, not an expression: Playwright evaluates expressions with eval(), which
    # the dashboard's Content-Security-Policy (rightly) refuses.
    page.wait_for_function(f"() => Number(document.body.dataset.loaded) >= {times}")


def _points(page: Any, selector: str) -> int:
    return int(page.eval_on_selector(f"{selector} svg", "svg => svg.dataset.points"))


def test_study_list(page: Any, server: _Server) -> None:
    total = _json(server, "/v1/studies?limit=1")["total"]
    page.goto(server.base + "/")
    page.wait_for_selector("#studies tbody tr[data-study]")
    rows = page.locator("#studies tbody tr[data-study]").count()
    assert rows == min(total, 100)
    assert page.locator("#shapes tbody tr").count() == len(_json(server, "/v1/shapes"))
    page.screenshot(path=str(_artifacts() / "dashboard-studies.png"), full_page=True)


def test_study_page_plots_the_data(page: Any, server: _Server) -> None:
    study = _biggest_study(server)
    detail = _json(server, f"/v1/studies/{study['id']}")
    ok = detail["status_counts"].get("ok", 0)
    assert ok > 0, "the database has no ok trials to plot"
    page.goto(f"{server.base}/studies/{study['id']}")
    _wait_loaded(page, 1)

    assert _points(page, "#conv-trials") == ok
    assert _points(page, "#conv-time") == ok
    assert _points(page, "#elites") == ok  # every ok trial, elites highlighted among them
    trials = _json(server, f"/v1/studies/{study['id']}/trials?limit=2000")["items"]
    k = int(detail["settings"].get("elites") or 4)
    per_generation: dict[int, int] = {}
    for t in trials:
        if t["status"] == "ok":
            per_generation[t["generation"]] = per_generation.get(t["generation"], 0) + 1
    assert page.locator("#elites circle.elite").count() == sum(
        min(k, n) for n in per_generation.values()
    )
    assert page.locator("#elites-table tbody tr").count() == len({t["generation"] for t in trials})
    assert page.locator("#conv-trials path.line").count() == 1  # the best-so-far step line
    assert _points(page, "#failures") == len(detail["status_counts"])

    params = page.locator("#params .param")
    assert params.count() >= 1
    names = [params.nth(i).get_attribute("data-param") for i in range(params.count())]
    assert set(names) == {key for t in trials for key in t["config"]}
    assert sum(_points(page, f'#params .param[data-param="{n}"]') for n in names) >= ok

    best = json.loads(page.inner_text("#best-json"))
    expected = (detail["published_best"] or detail["best_trial"])["config"]
    assert best == expected
    page.screenshot(path=str(_artifacts() / "dashboard.png"), full_page=True)


def test_trial_table_sorts_filters_and_copies(page: Any, server: _Server) -> None:
    study = _biggest_study(server)
    trials = _json(server, f"/v1/studies/{study['id']}/trials?limit=2000")["items"]
    page.goto(f"{server.base}/studies/{study['id']}")
    _wait_loaded(page, 1)
    rows = page.locator("#trials tbody tr")
    assert rows.count() == min(len(trials), 500)

    page.click('#trials th[data-key="p50_us"]')  # ascending p50: the fastest first
    first = rows.nth(0).get_attribute("data-trial")
    fastest = min((t for t in trials if t["p50_us"] is not None), key=lambda t: t["p50_us"])
    assert int(first) == fastest["id"]
    page.click('#trials th[data-key="p50_us"]')  # descending
    slowest = max((t for t in trials if t["p50_us"] is not None), key=lambda t: t["p50_us"])
    assert int(rows.nth(0).get_attribute("data-trial")) == slowest["id"]

    failing = sorted({t["status"] for t in trials} - {"ok"})
    if failing:
        page.select_option("#f-status", failing[0])
        expected = sum(1 for t in trials if t["status"] == failing[0])
        assert rows.count() == expected
        assert page.locator(f"#trials tbody .badge.status-{failing[0]}").count() == expected
        page.select_option("#f-status", "")
    page.fill("#f-text", "no config has this text")
    assert rows.count() == 0
    page.fill("#f-text", "")

    rows.nth(0).click()
    selected = json.loads(page.inner_text("#selected-json"))
    assert selected["id"] == int(rows.nth(0).get_attribute("data-trial"))

    page.click("#copy-best")
    page.wait_for_function("() => document.getElementById('copy-best').textContent === 'copied'")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert json.loads(copied) == json.loads(page.inner_text("#best-json"))


def test_a_running_study_refreshes(page: Any, server: _Server, db_url: str) -> None:
    if os.environ.get("EVOTUNE_BROWSER_DB"):
        pytest.skip("writes to the database: only over the sample database")
    studies = _json(server, "/v1/studies?limit=500")["items"]
    running = next(s for s in studies if s["state"] == "running")
    page.goto(f"{server.base}/studies/{running['id']}?refresh=250")
    _wait_loaded(page, 1)
    assert "live" in page.inner_text("#live")
    before = _points(page, "#conv-trials")
    database = open_database(db_url, upgrade=False)
    try:
        with database.session() as s:  # the search stores one more fast trial
            study = repository.get_study(s, running["id"])
            config = {"refresh": "test"}
            trial = repository.add_running_trial(
                s, study, 10_000, config, config_hash(config), 0, 9, [], "seed"
            )
            result = TrialResult(trial.id, TrialStatus.OK, 1.0, 1.0, 1.0, 3, [1.0] * 3)
            repository.finish_trial(s, trial, result)
    finally:
        database.dispose()
    page.wait_for_function(
        f"() => Number(document.querySelector('#conv-trials svg').dataset.points) === {before + 1}",
        timeout=15_000,
    )
    assert "1.00 µs" in page.inner_text("#summary")  # the new best p50 is shown


def _tick_texts(page: Any, selector: str, anchor: str) -> list[str]:
    return page.eval_on_selector_all(
        f'{selector} svg text.tick[text-anchor="{anchor}"]', "els => els.map(e => e.textContent)"
    )


def test_integer_axes_have_integer_ticks(page: Any, server: _Server) -> None:
    study = _biggest_study(server)
    page.goto(f"{server.base}/studies/{study['id']}")
    _wait_loaded(page, 1)
    ticks = _tick_texts(page, "#conv-trials", "middle")  # x: trial number
    assert ticks and all(t.isdigit() for t in ticks), ticks


def test_parallel_coordinates_and_importance(page: Any, server: _Server) -> None:
    study = _biggest_study(server)
    detail = _json(server, f"/v1/studies/{study['id']}")
    ok = detail["status_counts"].get("ok", 0)
    trials = _json(server, f"/v1/studies/{study['id']}/trials?limit=2000")["items"]
    page.goto(f"{server.base}/studies/{study['id']}")
    _wait_loaded(page, 1)
    svg = "#parallel svg"
    assert int(page.eval_on_selector(svg, "s => s.dataset.lines")) == ok
    assert page.locator(f"{svg} path.trial").count() == ok  # one polyline per ok trial
    names = {key for t in trials if t["status"] == "ok" for key in t["config"]}
    axes = page.eval_on_selector_all(f"{svg} g.axis", "gs => gs.map(g => g.dataset.param)")
    assert set(axes) == names | {"p50_us"}
    for name in names:
        values = {t["config"][name] for t in trials if t["status"] == "ok" and name in t["config"]}
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            labels = page.eval_on_selector_all(
                f'{svg} g.axis[data-param="{name}"] text.tick', "els => els.map(e => e.textContent)"
            )
            assert {label for label in labels if label != "n/a"} == {str(v) for v in values}
    importance = _json(server, f"/v1/studies/{study['id']}/importance")
    assert importance["importances"], "the study has parameters that matter"
    page.wait_for_selector("#importance svg")
    assert page.locator("#importance rect.bar").count() == len(importance["importances"])
    first = page.eval_on_selector("#importance svg text.tick", "t => t.textContent")
    assert first == importance["importances"][0]["param"]  # most important first
    page.locator("#parallel").screenshot(path=str(_artifacts() / "dashboard-parallel.png"))
    page.locator("#importance").screenshot(path=str(_artifacts() / "dashboard-importance.png"))


def test_a_live_study_fetches_only_new_trials(page: Any, server: _Server, db_url: str) -> None:
    if os.environ.get("EVOTUNE_BROWSER_DB"):
        pytest.skip("writes to the database: only over the sample database")
    studies = _json(server, "/v1/studies?limit=500")["items"]
    running = next(s for s in studies if s["state"] == "running")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/trials" in r.url else None)
    page.goto(f"{server.base}/studies/{running['id']}?refresh=250")
    _wait_loaded(page, 3)
    assert "after=" not in asked[0]  # the first load reads every trial
    later = asked[1:]
    assert later and all("after=" in url for url in later), later
    assert page.evaluate("document.body.dataset.fullLoads") == "1"
    # Its running trials are asked again (they finish in place): the cursor sits before them.
    first_running = min(
        t["number"]
        for t in _json(server, f"/v1/studies/{running['id']}/trials?limit=2000")["items"]
        if t["status"] == "running"
    )
    assert f"after={first_running - 1}" in later[-1]


def test_several_studies_on_one_convergence_plot(page: Any, server: _Server) -> None:
    studies = [
        s for s in _json(server, "/v1/studies?limit=500")["items"] if s["status_counts"].get("ok")
    ]
    by_shape: dict[str, list[dict[str, Any]]] = {}
    for s in studies:  # side by side: the studies of one shape (strategies, seeds, GPUs)
        by_shape.setdefault(s["shape"]["key"], []).append(s)
    chosen = max(by_shape.values(), key=len)[:4]
    if len(chosen) < 2:
        chosen = studies[:3]
    page.goto(server.base + "/")
    page.wait_for_selector("#studies tbody tr[data-study]")
    for s in chosen:
        page.check(f'#studies input.pick[value="{s["id"]}"]')
    page.click("#compare")
    _wait_loaded(page, 1)
    assert page.locator("#legend .entry").count() == len(chosen)
    assert page.locator("#cmp-trials path.line").count() == len(chosen)
    assert page.locator("#cmp-time path.line").count() == len(chosen)
    series = page.eval_on_selector_all(
        "#cmp-trials path.line", "ps => ps.map(p => p.className.baseVal)"
    )
    assert len(set(series)) == len(chosen)  # a colour per study
    ticks = _tick_texts(page, "#cmp-trials", "middle")
    assert ticks and all(t.isdigit() for t in ticks), ticks
    page.screenshot(path=str(_artifacts() / "dashboard-compare.png"), full_page=True)


def test_overview_of_best_configs(page: Any, server: _Server) -> None:
    rows = _json(server, "/v1/overview")
    page.goto(server.base + "/overview")
    _wait_loaded(page, 1)
    assert page.locator("#overview tbody tr[data-kernel]").count() == len(rows) > 0
    for row in rows:
        cell = page.locator(
            f"#overview tbody tr[data-shape='{row['shape']['key']}'][data-gpu=\"{row['gpu']}\"]"
        )
        assert cell.count() == 1
        speedup = cell.locator("td.default-speedup").inner_text()
        expected = row["speedup_over_default"]
        assert speedup == ("–" if expected is None else f"{expected:.2f}×")
        if row["baseline"]:
            assert (
                cell.locator("td.baseline-speedup").inner_text()
                == f"{row['baseline']['speedup']:.2f}×"
            )
    page.check("#with-interpreted")
    _wait_loaded(page, 2)
    with_interpreter = _json(server, "/v1/overview?interpreted=true")
    assert page.locator("#overview tbody tr[data-kernel]").count() == len(with_interpreter)
    page.screenshot(path=str(_artifacts() / "dashboard-overview.png"), full_page=True)


def test_a_missing_study_says_so(browser: Any, server: _Server) -> None:
    page = browser.new_page()
    try:
        page.goto(f"{server.base}/studies/987654")
        page.wait_for_selector("#error:not([hidden])")
        assert "404" in page.inner_text("#error")
        assert "no study with id 987654" in page.inner_text("#error")
    finally:
        page.close()


def test_best_config_for_ad_hoc_dims(page: Any, server: _Server) -> None:
    """An ad-hoc shape on the studies page is labelled by its dims and links to its study and
    to the lookup on /overview, which answers other dims with the nearest tuned shape."""
    from urllib.parse import urlencode

    adhoc = next(
        (s for s in _json(server, "/v1/shapes") if s["name"] is None and s["tuned_on"]), None
    )
    if adhoc is None:
        pytest.skip("the database has no ad-hoc shape tuned on a GPU")
    page.goto(server.base + "/")
    row = page.locator(f"#shapes tbody tr[data-shape='{adhoc['key']}']")
    row.wait_for()
    text = {k: json.dumps(v) if isinstance(v, bool) else v for k, v in adhoc["dims"].items()}
    label = " ".join(f"{k}={v}" for k, v in text.items())  # as JavaScript writes the dims
    link = row.locator("td").nth(1).locator("a")
    assert link.inner_text() == label
    assert link.get_attribute("href") == f"/studies/{adhoc['newest_study_id']}"
    row.locator("a.lookup-link").click()
    page.wait_for_function("() => Number(document.body.dataset.lookups) >= 1")
    answer = page.locator("#lookup-answer")
    assert answer.get_attribute("data-exact") == "true"
    assert answer.get_attribute("data-shape") == adhoc["key"]

    numeric = next(k for k, v in adhoc["dims"].items() if isinstance(v, int) and v > 1)
    page.fill(f"#dim-{numeric}", str(adhoc["dims"][numeric] * 2))
    page.click("#lookup button[type=submit]")
    page.wait_for_function("() => Number(document.body.dataset.lookups) >= 2")
    asked = {**adhoc["dims"], numeric: adhoc["dims"][numeric] * 2}
    query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in asked.items()}
    served = _json(
        server, "/v1/best?" + urlencode({"kernel": adhoc["kernel"], **query, "nearest": "true"})
    )
    assert answer.get_attribute("data-exact") == "false"
    assert answer.get_attribute("data-shape") == served["shape"]["key"]
    assert "the nearest tuned shape answered" in answer.inner_text()
    assert f"{numeric}={asked[numeric]}" in page.url  # the lookup is a link

    page.screenshot(path=str(_artifacts() / "dashboard-lookup.png"), full_page=True)


def test_a_lookup_the_service_refuses_says_why(browser: Any, server: _Server) -> None:
    page = browser.new_page()  # the refused fetch is a console error in Chromium
    try:
        kernel = _json(server, "/v1/kernels")[0]
        dim = next(iter(kernel["dims"]))
        page.goto(f"{server.base}/overview?kernel={kernel['name']}&{dim}=1")
        page.wait_for_function("() => Number(document.body.dataset.lookups) >= 1")
        answer = page.locator("#lookup-answer")
        assert answer.get_attribute("data-status") == "422"
        assert "missing" in answer.inner_text()  # the dims it needs
    finally:
        page.close()
