"""`orchestrai` commands (typer). Each parses its options, calls one library function and renders the result.

Heavy libraries (pydantic, jinja2, rich, the provider SDKs, wandb) are imported inside the commands, so
`orchestrai --help` starts fast. The console script's entry point, `main`, is in `app.py`: it answers
the common forms of `orchestrai validate` without importing typer at all.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from ..errors import OrchestraiError

app = typer.Typer(name="orchestrai", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_enable=False,  # tracebacks with locals would show API keys
                  help="Run LLM pipelines written in YAML as a parallel DAG of modules.")
logs_app = typer.Typer(help="List past runs, or show one.", invoke_without_command=True, no_args_is_help=False)
app.add_typer(logs_app, name="logs")

ConfigOption = typer.Option(None, "--config", "-c",
                            help="Config file (default: ./config.yml, then the user config dir).")
RayAddressOption = typer.Option(None, "--ray-address", help="An existing Ray cluster's head, HOST:PORT "
                                "(default: a Ray instance started here on 127.0.0.1).")
LogDirOption = typer.Option(None, "--log-dir", help="Where memory logs go (default: log_dir from config).")


def user_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print a user's mistake as one or two lines and exit with its code; never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except OrchestraiError as exc:
            from .render import print_error

            print_error(exc)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


@app.command()
@user_errors
def run(
    pipeline: Path | None = typer.Argument(None, help="Pipeline file (default: pipeline from config)."),
    config: Path | None = ConfigOption,
    inputs: list[str] = typer.Option([], "--input", "-i", help="A run input NAME=VALUE, e.g. request=\"...\"."),
    input_files: list[str] = typer.Option([], "--input-file", help="A run input read from a file: NAME=PATH."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run on the echo provider and print what would be sent."),
    stream: bool = typer.Option(False, "--stream", help="Stream the tokens of running steps to the terminal."),
    max_concurrency: int | None = typer.Option(None, "--max-concurrency", min=1, help="Steps running at once."),
    log_dir: Path | None = LogDirOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; print only the result."),
    as_json: bool = typer.Option(False, "--json", help="Print a machine-readable summary on stdout."),
    use_wandb: bool = typer.Option(False, "--wandb", help="Send a trace of the run to Weights & Biases."),
    workspace: Path | None = typer.Option(None, "--workspace",
                                          help="Where generated code goes (default: generated_code/<run id>)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Allow running generated code without asking."),
    no_exec: bool = typer.Option(False, "--no-exec", help="Never execute generated code (the debugger only reviews)."),
    budget: float | None = typer.Option(None, "--budget", min=0.000001,
                                        help="Stop before spending more than this many USD."),
    resume: str | None = typer.Option(None, "--resume", metavar="RUN",
                                      help="Reuse matching steps of an earlier run (id or log path)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not answer calls from the call cache."),
    from_run: str | None = typer.Option(None, "--from-run", metavar="RUN",
                                        help="With --only: take the step's inputs from this run (id or log path)."),
    only: str | None = typer.Option(None, "--only", metavar="STEP", help="Run only this step (needs --from-run)."),
    watch: bool = typer.Option(False, "--watch", help="Run again whenever the pipeline, a prompt, schema or module "
                               "is saved, reusing unchanged steps; show what changed."),
) -> None:
    """Run a pipeline."""
    from .runcmd import RunRequest, run_command

    request = RunRequest(pipeline=pipeline, config=config, inputs=inputs, input_files=input_files,
                         dry_run=dry_run, stream=stream, max_concurrency=max_concurrency, log_dir=log_dir,
                         quiet=quiet, as_json=as_json, use_wandb=use_wandb, workspace=workspace, yes=yes,
                         no_exec=no_exec, budget=budget, resume=resume, no_cache=no_cache,
                         from_run=from_run, only=only, watch=watch)
    if watch:
        from .watchcmd import watch_command

        raise typer.Exit(watch_command(request))
    raise typer.Exit(run_command(request))


@app.command("eval")
@user_errors
def eval_(
    eval_file: Path = typer.Argument(..., metavar="EVAL.yml", help="The eval file: pipeline, tests, variants."),
    config: Path | None = ConfigOption,
    html: Path | None = typer.Option(None, "--output", "-o", help="Write a self-contained HTML report here."),
    junit: Path | None = typer.Option(None, "--junit", help="Write JUnit XML here (a testcase per test x variant)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON on stdout instead of the table."),
    variants: list[str] = typer.Option([], "--variant", metavar="NAME", help="Run only this variant (repeatable)."),
    concurrency: int | None = typer.Option(None, "--concurrency", min=1, help="Test runs at once."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not answer calls from the call cache."),
    budget: float | None = typer.Option(None, "--budget", min=0.000001, help="Stop spending above this many USD."),
    log_dir: Path | None = LogDirOption,
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (test runs as Ray tasks)."),
    ray_address: str | None = RayAddressOption,
) -> None:
    """Run an eval: every test under every variant, with assertions; exit 1 when a variant misses its threshold."""
    from .evalcmd import EvalRequest, eval_command

    raise typer.Exit(eval_command(EvalRequest(eval_file, config, html, junit, as_json, variants, concurrency,
                                              no_cache, budget, log_dir, executor, ray_address)))


@app.command()
@user_errors
def batch(
    pipeline: Path = typer.Argument(..., help="Pipeline file, run once per data row."),
    data: Path = typer.Option(..., "--data", help="Rows: .jsonl (a JSON object a line) or .csv with a header."),
    maps: list[str] = typer.Option([], "--map", help="Run input from a column: INPUT=COLUMN, e.g. request=question."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Results JSONL (default: <data file name>.results.jsonl here)."),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Rows running at once."),
    resume: bool = typer.Option(False, "--resume", help="Skip the rows the results file holds as completed."),
    allow_failures: bool = typer.Option(False, "--allow-failures", help="Exit 0 even when rows failed."),
    budget: float | None = typer.Option(None, "--budget", min=0.000001, help="One budget in USD for all rows."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Run every row on the echo provider."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not answer calls from the call cache."),
    config: Path | None = ConfigOption,
    log_dir: Path | None = LogDirOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
    as_json: bool = typer.Option(False, "--json", help="Print the batch summary as JSON on stdout."),
    executor: str = typer.Option("local", "--executor", help="local (this process) or ray (rows as Ray tasks)."),
    ray_address: str | None = RayAddressOption,
) -> None:
    """Run a pipeline once per row of a data file, rows at once, sharing limits, budget and cache."""
    from .batchcmd import BatchRequest, batch_command

    raise typer.Exit(batch_command(BatchRequest(pipeline=pipeline, data=data, config=config, maps=maps, output=output,
                                                concurrency=concurrency, resume=resume, allow_failures=allow_failures,
                                                budget=budget, dry_run=dry_run, no_cache=no_cache, log_dir=log_dir,
                                                quiet=quiet, as_json=as_json, executor=executor,
                                                ray_address=ray_address)))


@app.command()
@user_errors
def validate(
    pipelines: list[Path] = typer.Argument(..., help="Pipeline files (or eval files) to check."),
    config: Path | None = ConfigOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also list each step's module, provider and model."),
) -> None:
    """Check pipelines and eval files (and the config) without running anything; report every problem."""
    from .validatecmd import validate_pipelines

    raise typer.Exit(validate_pipelines(pipelines, config, typer.echo, verbose=verbose))


@app.command()
@user_errors
def graph(
    pipeline: Path = typer.Argument(..., help="Pipeline file to draw."),
    fmt: str | None = typer.Option(None, "--format", "-f", metavar="FORMAT",
                                   help="text, mermaid, dot or svg (default: from -o's suffix, else text)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
    graphviz: bool = typer.Option(False, "--graphviz", help="Lay the SVG out with Graphviz's `dot` (on PATH)."),
    config: Path | None = ConfigOption,
) -> None:
    """Draw a pipeline's DAG without running it: parallel groups and edges, Mermaid, DOT or SVG."""
    from ..graphviews import choose_format, render
    from ..project import Project

    chosen = choose_format(fmt, str(output) if output else None, graphviz)
    text = render(Project.open(config).load(pipeline), chosen, graphviz=graphviz)
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise OrchestraiError(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"wrote {output} ({chosen})", err=True)


@app.command()
@user_errors
def plan(
    task: str = typer.Argument(..., help="What the pipeline should do."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Where to write it (default: pipelines/<the task's first words>.yml)."),
    run: bool = typer.Option(False, "--run", help="Run the plan once written (asks first on a terminal)."),
    create_modules: bool = typer.Option(False, "--create-modules",
                                        help="Let the planner write new prompt modules into system_prompts/."),
    yes: bool = typer.Option(False, "--yes", "-y", help="With --run: run without asking."),
    force: bool = typer.Option(False, "--force", help="Replace the output file if it exists."),
    config: Path | None = ConfigOption,
    inputs: list[str] = typer.Option([], "--input", "-i", help="A run input for --run: NAME=VALUE."),
    input_files: list[str] = typer.Option([], "--input-file", help="A run input for --run read from a file."),
    log_dir: Path | None = LogDirOption,
) -> None:
    """Ask the planner model for a pipeline doing TASK, validate it, show it for review and write it."""
    from .plancmd import PlanRequest, plan_command

    raise typer.Exit(plan_command(PlanRequest(task=task, output=output, config=config, run=run,
                                              create_modules=create_modules, yes=yes, force=force, inputs=inputs,
                                              input_files=input_files, log_dir=log_dir)))


@app.command()
def schema() -> None:
    """Print the JSON Schema of the pipeline format (for editor completion and checks)."""
    from ..pipeline.spec import pipeline_json_schema

    sys.stdout.write(pipeline_json_schema() + "\n")


@app.command()
@user_errors
def modules(config: Path | None = ConfigOption,
            as_json: bool = typer.Option(False, "--json", help="Print the catalog as JSON: modules (kind, "
                                         "description, inputs, output_schema), sub-pipelines and tools.")) -> None:
    """List every module a pipeline can use: its kind, where it comes from and what it does."""
    from ..project import Project

    project = Project.open(config)
    if as_json:
        import json

        from ..catalog import catalog

        sys.stdout.write(json.dumps(catalog(project).as_json(), indent=2, ensure_ascii=False) + "\n")
        return
    from ..modules.describe import describe_all
    from .render import modules_table, stdout_console

    descriptions = {m.name: m.description or m.problem for m in describe_all(project.registry)}
    stdout_console().print(modules_table(project.registry.all(), descriptions))


@logs_app.callback()
@user_errors
def logs(ctx: typer.Context, config: Path | None = ConfigOption, log_dir: Path | None = LogDirOption) -> None:
    """List past runs: time, pipeline, status, steps, tokens, cost."""
    if ctx.invoked_subcommand is not None:
        return
    from ..observe.runs import list_runs
    from .render import runs_table, stdout_console

    stdout_console(min_width_when_piped=160).print(runs_table(list_runs(_log_dir(config, log_dir))))


@logs_app.command("show")
@user_errors
def logs_show(run_ref: str = typer.Argument(..., metavar="RUN", help="Run id (or its start) or a log file path."),
              config: Path | None = ConfigOption, log_dir: Path | None = LogDirOption,
              as_json: bool = typer.Option(False, "--json", help="Print the whole log as JSON."),
              show_all: bool = typer.Option(False, "--all",
                                            help="Show every item of a fan-out (one of over 20 items is summarized, "
                                                 "with its failed items)."),
              open_report: bool = typer.Option(False, "--open", help="Write the run's HTML report beside its log "
                                               "(<log>.html) and print its path.")) -> None:
    """Show one run: its steps, their status, tokens, cost and outputs; items, iterations and
    sub-pipeline steps indented under their step."""
    from ..observe.runs import dump, find_run
    from .render import print_run, stdout_console

    if open_report:
        from .reportcmd import open_beside_log

        typer.echo(str(open_beside_log(_log_dir(config, log_dir), run_ref, config)))
        return
    path, log = find_run(_log_dir(config, log_dir), run_ref)
    if as_json:
        sys.stdout.write(dump(log) + "\n")
    else:
        print_run(stdout_console(), path, log, show_all=show_all)


@app.command()
@user_errors
def report(run_a: str = typer.Argument(..., metavar="RUN", help="Run id (or its start) or a log file path."),
           run_b: str | None = typer.Argument(None, metavar="RUN_B", help="A second run: compare the two."),
           output: Path | None = typer.Option(None, "--output", "-o", help="report.html, report.md or report.pdf "
                                              "(default: report-<run id>.html here)."),
           config: Path | None = ConfigOption, log_dir: Path | None = LogDirOption) -> None:
    """Write a report of a stored run (HTML, Markdown or PDF by the suffix), or of two runs compared; no re-run."""
    from .reportcmd import report_command

    typer.echo(str(report_command(_log_dir(config, log_dir), run_a, run_b, output, config)))


cache_app = typer.Typer(help="The call cache: identical provider calls answered without a request.",
                        no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@cache_app.command("stats")
@user_errors
def cache_stats(config: Path | None = ConfigOption) -> None:
    """Where the cache is, how many calls it holds and its size."""
    from ..config import load_config
    from ..engine.cache import CallCache
    from .render import print_cache_stats, stdout_console

    cache = CallCache(load_config(config).cache_dir)
    print_cache_stats(stdout_console(), cache.stats())
    cache.close()


@cache_app.command("clear")
@user_errors
def cache_clear(config: Path | None = ConfigOption) -> None:
    """Delete every cached call."""
    from ..config import load_config
    from ..engine.cache import CallCache

    cache = CallCache(load_config(config).cache_dir)
    removed = cache.clear()
    cache.close()
    if cache.problem:
        raise OrchestraiError(cache.problem)
    typer.echo(f"removed {removed} cached calls from {cache.path}")


config_app = typer.Typer(help="The config file: convert one from the original OrchestrAI.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("migrate")
@user_errors
def config_migrate(
    path: Path | None = typer.Argument(None, help="Config file (default: the one `run` would read, ./config.yml)."),
    write: bool = typer.Option(False, "--write", help="Rewrite the file in place, keeping a backup (PATH.bak)."),
) -> None:
    """Print a config in the original OrchestrAI's format in this one's (or rewrite it with --write)."""
    from ..config_migrate import migrate_config, write_migration

    migration = migrate_config(path)
    if migration.text is None:
        typer.echo(f"{migration.path} is already in orchestrai's format; nothing to change", err=True)
    elif not write:
        sys.stdout.write(migration.text)
    else:
        backup = write_migration(migration)
        typer.echo(f"converted {migration.path} (the original is in {backup})", err=True)


def _log_dir(config: Path | None, log_dir: Path | None) -> Path:
    if log_dir is not None:
        return log_dir
    from ..config import load_config

    return load_config(config).log_dir

