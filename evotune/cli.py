"""The `evotune` command line: parses, calls library functions, prints.

User errors (EvotuneError's UserError branch) print one line and exit with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from evotune.errors import UserError
from evotune.kerneltuner import KERNEL_TUNER_PREFIX, KERNEL_TUNER_STRATEGIES

if TYPE_CHECKING:
    from pydantic import BaseModel

app = typer.Typer(no_args_is_help=True, help="Evolutionary autotuning of Triton kernels.")
db_app = typer.Typer(no_args_is_help=True, help="Database maintenance.")
app.add_typer(db_app, name="db")
landscape_app = typer.Typer(no_args_is_help=True, help="Recorded landscapes (exhaustive studies).")
app.add_typer(landscape_app, name="landscape")

console = Console()
err_console = Console(stderr=True)

KernelOpt = Annotated[
    str, typer.Option("--kernel", "-k", help="Kernel (a search-space file name).")
]
DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy URL or SQLite path (env: EVOTUNE_DB; default ./evotune.db)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
_PIPELINE_DEPTH_HELP = (
    "Generations in flight: 1 is synchronous, 2 queues the next while one runs, "
    "0 is asynchronous (not repeatable)."
)
PipelineDepthOpt = Annotated[int, typer.Option(min=0, help=_PIPELINE_DEPTH_HELP)]
ShapeOpt = Annotated[
    str | None, typer.Option("--shape", "-s", help="A named shape of the search space.")
]
DimsOpt = Annotated[
    str | None,
    typer.Option(
        help="An ad-hoc shape instead of --shape: every dim of the space (those with a "
        "default may be left out), e.g. 'B=8,H=32,S=3000,D=128,causal=true,dtype=bfloat16'."
    ),
]


def _print_error(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _print_records(records: BaseModel | Sequence[BaseModel]) -> None:
    """Stored records (`evotune.schemas`) as the REST API gives them; strict JSON (the
    builders turn NaN and infinities into null, and allow_nan=False makes sure)."""
    data = (
        [r.model_dump(mode="json") for r in records]
        if isinstance(records, Sequence)
        else records.model_dump(mode="json")
    )
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")


def _print_version(value: bool) -> None:
    if value:
        from evotune import __version__

        console.print(f"evotune {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Evolutionary autotuning of Triton kernels."""


def _space_and_shape(kernel: str, shape: str | None, dims: str | None) -> tuple[Any, Any]:
    """The space and the shape a command is about: named by --shape, or given by --dims."""
    from evotune.space import load_space

    if shape is not None and dims is not None:
        raise UserError("give --shape or --dims, not both")
    space = load_space(kernel)
    if shape is not None:
        return space, space.shape(shape)
    if dims is None:
        # [optional]: the dims that have a default
        listed = (f"[{d}=...]" if d in space.dim_defaults else f"{d}=..." for d in space.dims)
        raise UserError(
            f"give --shape (one of {', '.join(space.shapes)}) or --dims ({', '.join(listed)})"
        )
    try:
        return space, space.parse_dims(dims)
    except UserError as exc:
        raise UserError(f"--dims: {exc}") from None


def _shape_args(target: Any) -> str:
    """The options that name this shape again on the command line."""
    if target.name is not None:
        return f"--shape {target.name}"
    return f"--dims '{target.dims_text()}'"


@app.command()
def search(
    shape: ShapeOpt = None,
    dims: DimsOpt = None,
    kernel: KernelOpt = "attention",
    budget: Annotated[int, typer.Option(min=1, help="Trials to run in the study.")] = 120,
    seed: Annotated[
        int | None,
        typer.Option(
            help="Seed of the strategy and of every trial's inputs (default 0; a resumed "
            "study keeps its own)."
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option(help="evolution, random, grid, tpe, cmaes, nsga2.")
    ] = "evolution",
    db: DbOpt = None,
    interpret: Annotated[
        bool, typer.Option("--interpret", help="Run through Triton's CPU interpreter.")
    ] = False,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start a new study instead of resuming.")
    ] = False,
    replay: Annotated[
        Path | None, typer.Option(help="Answer candidates from a recorded landscape file.")
    ] = None,
    gpus: Annotated[
        str | None, typer.Option(help="'all' or a comma list of GPU indices (default: 0).")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            help="Measure on a Ray cluster: its address ('auto', 'ray://head:10001') or "
            "'local'; one actor per GPU (with --interpret, CPU actors)."
        ),
    ] = None,
    ray_workers: Annotated[
        int | None,
        typer.Option(help="Ray actors to start (default: every GPU of the cluster; 1 CPU)."),
    ] = None,
    compile_workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="CPU processes compiling ahead of the GPUs "
            "(default: 8 per GPU, at most CPUs - GPUs - 1).",
        ),
    ] = None,
    time_limit: Annotated[float | None, typer.Option(help="Stop after this many seconds.")] = None,
    population: Annotated[
        int | None, typer.Option(help="Candidates per generation (the population of evolution).")
    ] = None,
    pipeline_depth: Annotated[
        int | None,
        typer.Option(min=0, help=_PIPELINE_DEPTH_HELP + " Default: 1 on one GPU, 0 on several."),
    ] = None,
    restrict: Annotated[
        str | None,
        typer.Option(
            help="Search only configs where this expression holds, e.g. \"impl == 'triton'\"."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune a kernel for one shape; stores every trial, publishes the best config."""
    from evotune.evaluators import open_evaluator
    from evotune.progress import search_observer
    from evotune.runner import SearchOptions, run_search
    from evotune.storage import SqlTrialStore, open_database

    space, target = _space_and_shape(kernel, shape, dims)
    if replay is not None and not replay.is_file():
        raise UserError(f"--replay: no such file {replay}")
    replayed = _replay_landscape(replay, space) if replay is not None else None
    database = open_database(db)
    settings = _population_settings(strategy, population) if population else {}
    options = SearchOptions(
        strategy=strategy,
        budget=budget,
        seed=seed,
        fresh=fresh,
        replay=str(replay) if replay else None,
        time_limit_s=time_limit,
        settings=settings,
        restrict=restrict,
        pipeline_depth=pipeline_depth,
    )
    evaluator = open_evaluator(
        space,
        interpret=interpret,
        gpus=gpus,
        replay=replayed,
        compile_workers=compile_workers,
        ray=ray,
        ray_workers=ray_workers,
    )
    try:
        with search_observer(err_console if as_json else console, target.label()) as observer:
            summary = run_search(
                SqlTrialStore(database), space, target, evaluator, options, observer
            )
    finally:
        evaluator.close()
    if as_json:
        _print_json(summary.to_dict())
        return
    from evotune.progress import render_summary

    console.print(render_summary(summary))


def _replay_landscape(path: Path, space: Any | None = None) -> Any:
    """A landscape file checked against the space it is replayed in (by default its own
    kernel's); what had to be normalised is one note on stderr."""
    from evotune.landscape import fit_to_space, load_landscape
    from evotune.space import load_space

    recorded = load_landscape(path)
    fitted = fit_to_space(recorded, space or load_space(recorded.kernel), path)
    _note_normalised(path, fitted)
    return fitted


def _note_normalised(path: Path, landscape: Any) -> None:
    if landscape.normalised:
        err_console.print(
            f"note: {path}: normalised {landscape.normalised} entries to the {landscape.kernel} "
            'space (values of another type, e.g. "64" for 64 or 0/1 for a bool; knobs that '
            "do not apply)",
            highlight=False,
            soft_wrap=True,
        )


def _population_settings(strategy: str, population: int) -> dict[str, int]:
    """`--population` sets the evolution's population, or another strategy's batch size."""
    from evotune.search.registry import default_settings

    key = "population" if "population" in default_settings(strategy) else "batch_size"
    return {key: population}


@app.command()
def best(
    shape: ShapeOpt = None,
    dims: DimsOpt = None,
    kernel: KernelOpt = "attention",
    db: DbOpt = None,
    gpu: Annotated[str | None, typer.Option(help="Only configs measured on this GPU name.")] = None,
    stale: Annotated[
        bool,
        typer.Option(
            "--stale", help="Also a config measured under another kernel source (says so)."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The published best config of a shape.

    GPU-measured first (interpreted ones on a CPU host), under the kernel source installed
    here unless --stale."""
    from evotune.evaluators import cuda_device_count
    from evotune.schemas import best_out, environment_out
    from evotune.source_hash import kernel_source_hash
    from evotune.storage import open_database, repository

    space, target = _space_and_shape(kernel, shape, dims)
    installed = kernel_source_hash(space.module)
    source = None if stale else installed
    database = open_database(db)
    with database.session() as session:
        row = repository.best_config(
            session, kernel, target.key, gpu=gpu, kernel_source_hash=source
        )
        if row is None and gpu is None and cuda_device_count() == 0:
            row = repository.best_config(
                session, kernel, target.key, include_interpreted=True, kernel_source_hash=source
            )
        if row is None:
            older = "" if stale else " (with --stale: also configs of older kernel sources)"
            raise UserError(
                f"nothing tuned for kernel {kernel!r} shape {target.label()!r} under the "
                f"installed kernel source; run `evotune search {_shape_args(target)}`{older}"
            )
        # As GET /v1/best answers, asked for under the installed kernel source.
        out = best_out(kernel, target, row, environment_out(row.environment), installed)
    if as_json:
        _print_records(out)
        return
    if out.stale:
        console.print(
            f"[yellow]stale: measured under kernel source {out.environment.kernel_source_hash}, "
            f"the installed one is {installed}; re-tune[/yellow]"
        )
    table = Table(title=f"best config: {kernel} / {target.label()}")
    table.add_column("field")
    table.add_column("value")
    for key, value in out.model_dump(mode="json", exclude={"requested", "exact"}).items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict) else str(value))
    console.print(table)


@app.command()
def shapes(kernel: KernelOpt = "attention", as_json: JsonOpt = False) -> None:
    """The named shapes of a kernel's search space."""
    from evotune.space import load_space

    space = load_space(kernel)
    if as_json:
        _print_json(space.shapes)
        return
    table = Table(title=f"shapes of {kernel}")
    table.add_column("name")
    for dim in space.dims:
        table.add_column(dim)
    for name, dims in space.shapes.items():
        complete = space.complete_dims(dims)  # the file leaves out dims at their default
        table.add_row(name, *(str(complete[d]) for d in space.dims))
    console.print(table)


@app.command()
def kernels(as_json: JsonOpt = False) -> None:
    """The kernels there are: one per search-space file ($EVOTUNE_SPACES or the bundled ones)."""
    from evotune.space import available_kernels, load_space, space_directory

    rows: list[dict[str, Any]] = []
    for name in available_kernels():
        space = load_space(name)
        rows.append(
            {
                "kernel": name,
                "description": space.description,
                "module": space.module,
                "parameters": list(space.parameters),
                "shapes": list(space.shapes),
            }
        )
    if as_json:
        _print_json(rows)
        return
    table = Table(title=f"kernels in {space_directory()}")
    for column in ("kernel", "description", "parameters", "shapes"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["kernel"],
            row["description"],
            str(len(row["parameters"])),
            ", ".join(row["shapes"]),
        )
    console.print(table)


@app.command()
def strategies(as_json: JsonOpt = False) -> None:
    """The search strategies there are, with the settings each reads (and their defaults)."""
    import inspect

    from evotune.search.registry import DEFAULT_STRATEGY, STRATEGIES

    rows: list[dict[str, Any]] = [
        {
            "strategy": name,
            "default": name == DEFAULT_STRATEGY,
            # The class's own docstring (not the base class's), first line.
            "description": inspect.cleandoc(cls.__dict__.get("__doc__") or "").split("\n")[0],
            "settings": cls.default_settings(),
        }
        for name, cls in STRATEGIES.items()
    ]
    if as_json:
        _print_json(rows)
        return
    table = Table(title="strategies (--strategy)")
    for column in ("strategy", "description", "settings"):
        table.add_column(column)
    for row in rows:
        label = f"{row['strategy']} (default)" if row["default"] else row["strategy"]
        settings = ", ".join(f"{k}={v}" for k, v in row["settings"].items())
        table.add_row(label, row["description"], settings)
    console.print(table)


@app.command()
def studies(
    db: DbOpt = None, kernel: Annotated[str | None, typer.Option()] = None, as_json: JsonOpt = False
) -> None:
    """Every study, newest first."""
    from evotune.schemas import StudyOut, study_out
    from evotune.storage import open_database, repository

    database = open_database(db)
    with database.session() as session:
        found = repository.list_studies(session, kernel=kernel, limit=10_000)
        stats = repository.trial_stats(session, [s.id for s in found])
        rows: list[StudyOut] = [study_out(s, *stats[s.id]) for s in found]
    if as_json:
        _print_records(rows)
        return
    table = Table(title="studies")
    for column in ("id", "kernel", "shape", "strategy", "state", "trials", "ok", "budget", "gpu"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row.id),
            row.kernel,
            row.shape.name or row.shape.key,
            row.strategy,
            row.state,
            str(row.trials),
            str(row.status_counts.get("ok", 0)),
            str(row.budget),
            row.environment.gpu,
        )
    console.print(table)


@app.command()
def trials(
    study_id: Annotated[int, typer.Argument(help="A study id from `evotune studies`.")],
    db: DbOpt = None,
    status: Annotated[str | None, typer.Option(help="Only trials with this status.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The trials of one study, in the order they were asked."""
    from evotune.records import TrialStatus
    from evotune.schemas import TrialOut, trial_out
    from evotune.storage import open_database, repository

    statuses = [s.value for s in TrialStatus]
    if status is not None and status not in statuses:
        raise UserError(f"--status {status!r} is not a trial status; one of {', '.join(statuses)}")
    database = open_database(db)
    with database.session() as session:
        repository.get_study(session, study_id)
        rows: list[TrialOut] = [
            trial_out(t)
            for t in repository.list_trials(session, study_id, status=status, limit=1_000_000)
        ]
    if as_json:
        _print_records(rows)
        return
    table = Table(title=f"trials of study {study_id}")
    for column in ("number", "gen", "op", "status", "p50 µs", "max err", "config"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r.number),
            str(r.generation),
            r.operator,
            r.status,
            f"{r.p50_us:.2f}" if r.p50_us is not None else "-",
            f"{r.max_error:.2e}" if r.max_error is not None else "-",
            json.dumps(r.config),
        )
    console.print(table)


@app.command()
def bench(
    shape: ShapeOpt = None,
    dims: DimsOpt = None,
    kernel: KernelOpt = "attention",
    config: Annotated[
        str | None, typer.Option(help="A config as JSON (missing keys take defaults).")
    ] = None,
    use_best: Annotated[
        bool, typer.Option("--best", help="Also time the stored best config.")
    ] = False,
    db: DbOpt = None,
    seed: int = 0,
    as_json: JsonOpt = False,
) -> None:
    """Time the kernel against the plug-in's baselines on the GPU.

    The default config, and --config / --best, against what the plug-in names as its
    baselines (torch SDPA for attention, cuBLAS for matmul)."""
    from evotune.bench import bench_table, render_bench_table
    from evotune.evaluators import cuda_device_count

    space, target = _space_and_shape(kernel, shape, dims)
    if cuda_device_count() == 0:
        raise UserError("no CUDA GPU found; `evotune bench` times on the GPU only")
    configs: dict[str, Any] = {"default": space.default_config()}
    if config is not None:
        try:
            given = json.loads(config)
        except json.JSONDecodeError as exc:
            raise UserError(f"--config is not valid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise UserError("--config must be a JSON object")
        merged = space.normalize({**space.default_config(), **given})
        problems = space.violations(merged, target.dims)
        if problems:
            raise UserError(
                f"--config is not valid for shape {target.label()!r}: {'; '.join(problems)}"
            )
        configs["given"] = merged
    if use_best:
        from evotune.source_hash import kernel_source_hash
        from evotune.storage import open_database, repository

        with open_database(db).session() as session:
            row = repository.best_config(
                session, kernel, target.key, kernel_source_hash=kernel_source_hash(space.module)
            )
            if row is None:
                raise UserError(
                    f"--best: nothing tuned on a GPU for shape {target.label()!r} under the "
                    "installed kernel source"
                )
            configs["best"] = dict(row.config)
    rows = bench_table(space, target, configs, seed=seed)
    if as_json:
        from evotune.schemas import bench_row_out

        _print_records([bench_row_out(row) for row in rows])
        return
    console.print(render_bench_table(rows, title=f"{kernel} / {target.label()}"))


@app.command()
def export(
    kernel: KernelOpt = "attention",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            help="json (a list of entries) or python (a module with BEST_CONFIGS and "
            "best_config(dims), standard library only).",
        ),
    ] = "json",
    output: Annotated[
        Path | None, typer.Option(help="The file to write (default: stdout).")
    ] = None,
    gpu: Annotated[str | None, typer.Option(help="Only configs measured on this GPU name.")] = None,
    interpreted: Annotated[
        bool, typer.Option("--interpreted", help="Also configs found under the CPU interpreter.")
    ] = False,
    stale: Annotated[
        bool,
        typer.Option("--stale", help="Also configs measured under another kernel source."),
    ] = False,
    db: DbOpt = None,
) -> None:
    """Write every published best of a kernel (dims -> config, p50, GPU, kernel source hash)
    as a file a program ships without the service."""
    from evotune.export import ExportFormat, export_entries, render
    from evotune.source_hash import kernel_source_hash
    from evotune.space import load_space
    from evotune.storage import open_database

    formats = [f.value for f in ExportFormat]
    if fmt not in formats:
        raise UserError(f"--format {fmt!r}: one of {', '.join(formats)}")
    space = load_space(kernel)
    with open_database(db).session() as session:
        entries = export_entries(
            session, space, kernel_source_hash(space.module), gpu, interpreted, stale
        )
    if not entries:
        raise UserError(
            f"nothing to export: no published best of kernel {kernel!r} passes the filters "
            "(--interpreted: also CPU-interpreter results; --stale: also older kernel sources)"
        )
    text = render(ExportFormat(fmt), kernel, entries)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text)
    except OSError as exc:
        raise UserError(f"--output: cannot write {output}: {exc.strerror or exc}") from None
    console.print(f"wrote {len(entries)} best configs of {kernel} to {output}", highlight=False)


@app.command("tune-pending")
def tune_pending(
    kernel: Annotated[
        str | None,
        typer.Option(
            "--kernel",
            "-k",
            help="Only the misses of this decorated kernel (<module>.<qualified name>).",
        ),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(min=1, help="Trials per miss (default: the decorator's budget)."),
    ] = None,
    interpret: Annotated[
        bool,
        typer.Option(
            "--interpret",
            help="Run the kernels through Triton's CPU interpreter (sets TRITON_INTERPRET=1), "
            "for misses recorded under it.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say which misses can be tuned here.")
    ] = False,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tune the misses that `evotune.autotune` recorded (pending studies), in this process,
    on arguments rebuilt from the recorded call; one line per miss."""
    import os

    if interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # before any kernel module is imported
    from evotune.autotuning.offline import tune_pending as run_pending
    from evotune.storage import SqlTrialStore, open_database

    out = err_console if as_json else console
    outcomes = run_pending(
        SqlTrialStore(open_database(db)),
        kernel=kernel,
        budget=budget,
        dry_run=dry_run,
        on_outcome=lambda o: out.print(o.line(), markup=False, highlight=False, soft_wrap=True),
    )
    if as_json:
        _print_json([o.to_dict() for o in outcomes])
        return
    if not outcomes:
        console.print("nothing pending" + (f" for {kernel}" if kernel else ""), highlight=False)
        return
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
    summary = ", ".join(f"{n} {result}" for result, n in counts.items())
    console.print(f"{len(outcomes)} pending: {summary}", highlight=False)


@landscape_app.command("export")
def landscape_export(
    study_id: Annotated[int, typer.Argument(help="A (grid) study to export.")],
    output: Annotated[Path, typer.Argument(help="The landscape file to write (JSON).")],
    db: DbOpt = None,
) -> None:
    """Write a study's trials as a landscape file for --replay and `compare`."""
    from evotune.landscape import Landscape, save_landscape
    from evotune.search.grid import valid_configs
    from evotune.space import load_space
    from evotune.storage import open_database, repository

    with open_database(db).session() as session:
        study = repository.get_study(session, study_id)
        study_restrict = study.settings.get("restrict")
        space = load_space(study.kernel.name).searched(study_restrict, study.interpreted)
        shape = space.adhoc_shape(study.shape.dims)
        records = [
            {
                "config": t.config,
                "status": t.status,
                "p50_us": t.p50_us,
                "p20_us": t.p20_us,
                "p80_us": t.p80_us,
                "max_error": t.max_error,
                "error": t.error,
                "compile_s": t.compile_s,
            }
            for t in repository.study_trials(session, study)
        ]
        environment = dict(study.environment.data)
    size = len(valid_configs(space, shape.dims))
    landscape = Landscape.from_records(
        space.kernel, shape, environment, size, records, study_restrict
    )
    save_landscape(landscape, output)
    console.print(
        f"wrote {len(landscape)} trials of study {study_id} to {output} (space: {size} valid configs)"
    )


@landscape_app.command("merge")
def landscape_merge(
    output: Annotated[Path, typer.Argument(help="The landscape file to write (JSON).")],
    parts: Annotated[
        list[Path], typer.Argument(help="Landscape files of one shape, GPU and kernel source.")
    ],
    across_kernel_sources: Annotated[
        bool,
        typer.Option(
            help="Allow parts of different kernel sources (new knob values recorded alone); "
            "the result lists every source hash."
        ),
    ] = False,
) -> None:
    """Join landscapes recorded in parts (sub-spaces, sessions) into one file."""
    from evotune.landscape import load_landscape, merge_landscapes, save_landscape
    from evotune.space import load_space

    loaded = [load_landscape(path) for path in parts]
    merged = merge_landscapes(loaded, load_space(loaded[0].kernel), across_kernel_sources)
    save_landscape(merged, output)
    console.print(
        f"wrote {len(merged)} trials from {len(parts)} files to {output} "
        f"(space: {merged.space_size} valid configs, {len(merged) / merged.space_size:.1%} recorded)"
    )


@landscape_app.command("import")
def landscape_import(
    measurements: Annotated[
        Path,
        typer.Argument(
            help="Another tuner's measurements of one shape (.csv or .jsonl): one row per "
            "config, knob columns, a time column (p50_us, time_us or time_ms) and "
            "optionally status (default ok; a row without a time failed)."
        ),
    ],
    output: Annotated[Path, typer.Argument(help="The landscape file to write (JSON).")],
    kernel: KernelOpt = "attention",
    shape: ShapeOpt = None,
    dims: DimsOpt = None,
    gpu: Annotated[str | None, typer.Option(help="The GPU they were measured on.")] = None,
) -> None:
    """Turn another tuner's measurements into a landscape file for --replay and `compare`."""
    from evotune.landscape import import_measurements, save_landscape

    space, target = _space_and_shape(kernel, shape, dims)
    imported = import_measurements(measurements, space, target, gpu)
    _note_normalised(measurements, imported)
    save_landscape(imported, output)
    console.print(
        f"wrote {len(imported)} trials to {output} ({len(imported.ok_trials)} ok; "
        f"space: {imported.space_size} valid configs)",
        highlight=False,
    )


# (No square brackets in help: rich would take them for markup.)
_COMPARE_STRATEGIES_HELP = (
    "Comma list of strategies: evotune's, and Kernel Tuner's own (with the kerneltuner extra "
    "installed): " + ", ".join(KERNEL_TUNER_PREFIX + name for name in KERNEL_TUNER_STRATEGIES) + "."
)


@app.command()
def compare(
    landscape: Annotated[
        Path | None, typer.Option(help="A landscape file (`evotune landscape export`).")
    ] = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="Instead of --landscape: a suite manifest (e.g. "
            "tests/data/landscapes/suite.yaml); every strategy runs on each of its landscapes, "
            "and a markdown table reports the held-out ones apart from the tuning subset. "
            "A strategy may carry settings, as key=value pairs in square brackets after its "
            "name, and its own cap and seeds: tpe@300/10."
        ),
    ] = None,
    only: Annotated[
        str | None,
        typer.Option(help="With --suite: only these of its landscapes (comma list of names)."),
    ] = None,
    strategies: Annotated[str, typer.Option(help=_COMPARE_STRATEGIES_HELP)] = (
        "evolution,random,tpe,cmaes"
    ),
    seeds: Annotated[int, typer.Option(min=1, help="Runs per strategy (seeds 0..N-1).")] = 20,
    target: Annotated[
        list[float] | None,
        typer.Option(
            help="Within this fraction of the landscape's best p50 (default 0.02; with "
            "--suite repeatable, default 0.02 and 0.05)."
        ),
    ] = None,
    max_evals: Annotated[
        int | None, typer.Option(help="Cap per run (default: 15% of the space, at least 100).")
    ] = None,
    pipeline_depth: PipelineDepthOpt = 1,
    sim_gpus: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Replay on a simulated pool of this many GPUs (results arrive in the order "
            "and at the times it would deliver them; needed for --pipeline-depth 0).",
        ),
    ] = None,
    sim_compilers: Annotated[
        int | None, typer.Option(min=1, help="Its compile processes (default: 8 per GPU).")
    ] = None,
    sim_compile_s: Annotated[float, typer.Option(min=0, help="Seconds per compile.")] = 0.65,
    sim_compile_rule: Annotated[
        list[str] | None,
        typer.Option(
            help="'EXPR=SECONDS': compile time of the configs where EXPR holds, e.g. "
            "\"impl == 'gluon'=3.0\" (repeatable; the first that holds applies)."
        ),
    ] = None,
    sim_gpu_s: Annotated[float, typer.Option(min=0, help="GPU seconds per trial.")] = 0.1,
    start: Annotated[
        str | None,
        typer.Option(
            help="What each run starts from: 'default' (the space's default config), "
            "'random' (a valid config drawn by the run's seed) or 'none' (default: 'default', "
            "with --suite 'random')."
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Compare strategies offline on a recorded landscape, or a suite of them: evaluations to
    reach the target."""
    from evotune.compare import check_comparison, compare_strategies, render_comparison
    from evotune.pool_model import PoolModel
    from evotune.progress import progress_counter
    from evotune.space import load_space

    if suite is not None:
        simulated = sim_gpus is not None or sim_compilers is not None or sim_compile_rule
        if landscape is not None or pipeline_depth != 1 or simulated:
            raise UserError(
                "--suite replays its own landscapes synchronously: no --landscape, "
                "--pipeline-depth or --sim-*"
            )
        _compare_suite(suite, only, strategies, seeds, target, max_evals, start, as_json)
        return
    if landscape is None:
        raise UserError("give --landscape FILE, or --suite MANIFEST")
    if only is not None:
        raise UserError("--only picks landscapes of a --suite")
    if target and len(target) > 1:
        raise UserError("one --target for one landscape (several with --suite)")
    pool: PoolModel | None = None
    if sim_gpus is not None:
        pool = PoolModel(
            gpus=sim_gpus,
            compilers=sim_compilers or 8 * sim_gpus,
            compile_s=sim_compile_s,
            compile_rules=tuple(_compile_rule(r) for r in sim_compile_rule or ()),
            gpu_s=sim_gpu_s,
        )
    elif sim_compilers is not None or sim_compile_rule:
        raise UserError("--sim-compilers and --sim-compile-rule need --sim-gpus")
    if pipeline_depth == 0 and pool is None:
        raise UserError(
            "--pipeline-depth 0 (asynchronous) depends on when results arrive; a landscape "
            "answers at once, so give a simulated pool (--sim-gpus N) to replay it"
        )
    recorded = _replay_landscape(landscape)
    interpreted = bool(recorded.environment.get("interpreted"))
    space = load_space(recorded.kernel).searched(recorded.restrict, interpreted)
    names = [s.strip() for s in strategies.split(",") if s.strip()]
    start = start or "default"
    check_comparison(
        recorded, names, seeds, start, pipeline_depth, pool
    )  # before the progress shows: one line if refused
    with progress_counter(
        err_console if as_json else console, "compare runs", len(names) * seeds
    ) as advance:
        report = compare_strategies(
            recorded,
            space,
            names,
            seeds=seeds,
            target=target[0] if target else 0.02,
            max_evals=max_evals,
            start=start,
            pipeline_depth=pipeline_depth,
            pool=pool,
            on_run=lambda run: advance(
                f"{run.strategy} seed {run.seed}: {run.evaluations} evaluations, {run.ended}"
            ),
        )
    if as_json:
        _print_json(report.to_dict())
        return
    console.print(render_comparison(report))


def _compare_suite(
    path: Path,
    only: str | None,
    strategies: str,
    seeds: int,
    targets: list[float] | None,
    max_evals: int | None,
    start: str | None,
    as_json: bool,
) -> None:
    """`compare --suite`: a markdown table (or JSON) on stdout, progress on stderr."""
    from evotune.progress import progress_counter
    from evotune.suite import (
        DEFAULT_TARGETS,
        load_suite,
        parse_strategies,
        prepare_suite,
        render_suite,
        run_suite,
    )

    suite = load_suite(path)
    if only is not None:
        suite = suite.select([name.strip() for name in only.split(",") if name.strip()])
    specs = parse_strategies(strategies)
    start = start or "random"  # the hold-out protocol's neutral start
    prepared = prepare_suite(suite, specs, seeds, start)  # before the progress: one line
    for item in prepared:
        if isinstance(item.entry.source, Path):  # a made-up landscape is built in its space
            _note_normalised(item.entry.source, item.landscape)
    runs = len(prepared) * sum(spec.seeds or seeds for spec in specs)
    with progress_counter(err_console, "compare runs", runs) as advance:
        report = run_suite(
            suite,
            prepared,
            specs,
            seeds,
            targets=targets or DEFAULT_TARGETS,
            max_evals=max_evals,
            start=start,
            on_run=lambda label, run: advance(
                f"{label} seed {run.seed}: {run.evaluations} evaluations, {run.ended}"
            ),
        )
    if as_json:
        _print_json(report.to_dict())
    else:
        sys.stdout.write(render_suite(report))


def _compile_rule(text: str) -> tuple[str, float]:
    """'EXPR=SECONDS' -> (EXPR, seconds); the split is at the last '='."""
    from evotune.errors import ExpressionError
    from evotune.expressions import compile_expression

    expression, sep, seconds = text.rpartition("=")
    refused = UserError(f"--sim-compile-rule takes 'EXPR=SECONDS', not {text!r}")
    if not sep:
        raise refused
    try:
        value = float(seconds)
        compile_expression(expression.strip())
    except (ValueError, ExpressionError):
        raise refused from None
    return expression.strip(), value


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    db: DbOpt = None,
) -> None:
    """Serve the REST API (/v1, /openapi.json) and the dashboard (/); docs/rest-api.md.

    Never creates the database: `evotune db upgrade` does (until then /healthz says 503)."""
    from evotune.api.server import serve as run_server

    run_server(host=host, port=port, db_url=db)


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Create the database or bring its schema to the newest revision."""
    from evotune.storage import open_database

    database = open_database(db)
    console.print(f"database {database.url} is at the newest schema revision")


def main() -> None:
    """Console entry point: every user error is one line on stderr and exit code 2."""
    from evotune.cli_errors import USAGE_EXIT_CODE, user_error_message

    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        err_console.print("aborted")
        raise SystemExit(130) from None
    except KeyboardInterrupt:
        err_console.print("interrupted; rerun the same command to resume")
        raise SystemExit(130) from None
    except Exception as exc:
        if _is_no_args_help(exc):
            exc.show()  # type: ignore[attr-defined]
            raise SystemExit(USAGE_EXIT_CODE) from None
        message = user_error_message(exc)
        if message is None:
            raise  # a bug: keep the traceback
        _print_error(message)
        raise SystemExit(USAGE_EXIT_CODE) from None
    # In non-standalone mode a typer.Exit(code) comes back as the return value.
    raise SystemExit(code if isinstance(code, int) else 0)


def _is_no_args_help(exc: BaseException) -> bool:
    """`evotune` or `evotune db` alone: click shows the help (and exits 2), not an error line."""
    return type(exc).__name__ == "NoArgsIsHelpError"
