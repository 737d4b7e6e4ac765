"""``lcfix plan`` and ``lcfix schema``: parse arguments, call the SDK, print."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO, get_args

import click

from lcfix.batch import JsonlSink, load_done_ids, plan_line, plan_records
from lcfix.cli.options import planner_option
from lcfix.errors import LcfixError
from lcfix.inputs import InputFormat, PromptRecord, looks_like_file, read_prompts
from lcfix.planner import Planner, check_prompt, get_planner
from lcfix.plans import Plan, plan_json_schema


def _build_planner(opts: dict[str, Any]) -> Planner:
    cache: bool | str = False if opts["no_cache"] else (opts["cache_path"] or True)
    return get_planner(
        opts["planner"],
        model=opts["model"],
        api_base=opts["api_base"],
        embeddings=opts["embeddings"],
        cache=cache,
        concurrency=opts["concurrency"],
        rpm=opts["rpm"],
    )


def _pct(x: float) -> str:
    return f"{x * 100:.1f}".rstrip("0").rstrip(".") + "%"


def render_text(plan: Plan) -> str:
    """A plan, readable by a person."""
    lines = [f"prompt    {plan.prompt}", f"at risk   {'yes' if plan.at_risk else 'no'}"]
    for pair in plan.pairs:
        extra = [
            x
            for x in (
                f"latent: {pair.latent}" if pair.latent else "",
                pair.pattern,
                f"severity {pair.severity}/5",
            )
            if x
        ]
        lines.append(f"pair      {pair.fragile}  <-  {pair.dominant}   ({'; '.join(extra)})")
        if pair.rationale:
            lines.append(f"          {pair.rationale}")
    for c in plan.concepts:
        if c.description:
            lines.append(f"concept   {c.name}: {c.description}")
    for i, stage in enumerate(plan.stages, start=1):
        label = "stages" if i == 1 else ""
        lines.append(f"{label:<10}{i}. {stage.prompt!r} until {_pct(stage.end)} of the steps")
    lines.append(f"natural   {plan.rewrites.natural}")
    lines.append(f"weighted  {plan.rewrites.weighted}")
    lines.append(f"a1111     {plan.rewrites.a1111}")
    info = plan.planner
    prov = f"{info.name} {info.version}" + (f" model={info.model}" if info.model else "")
    if info.cached:
        prov += " (cached)"
    if info.fallback:
        prov += f" (fallback: {info.fallback})"
    lines.append(f"planner   {prov}")
    return "\n".join(lines)


def render_table(rows: list[tuple[PromptRecord, Plan | LcfixError]]) -> str:
    """Plans as a fixed-width table."""
    head = ("id", "risk", "fragile <- dominant", "latent", "stage 1", "pattern")
    body: list[tuple[str, ...]] = []
    for rec, res in rows:
        if isinstance(res, Plan):
            pair = res.pairs[0] if res.pairs else None
            body.append(
                (
                    str(rec.id),
                    "yes" if res.at_risk else "no",
                    f"{pair.fragile} <- {pair.dominant}" if pair else "-",
                    (pair.latent or "-") if pair else "-",
                    _pct(res.stages[0].end) if res.at_risk else "-",
                    pair.pattern if pair else "-",
                )
            )
        else:
            body.append((str(rec.id), "ERR", str(res)[:60], "", "", ""))
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*r).rstrip() for r in [head, *body])


def _open_output(output: Path | None, resume: bool, overwrite: bool) -> tuple[TextIO, set[str]]:
    if output is None:
        if resume:
            raise click.UsageError("--resume needs -o/--output: it skips ids already there")
        return sys.stdout, set()
    if output.is_dir():
        raise click.UsageError(f"{output} is a directory; -o takes a file")
    done: set[str] = set()
    if resume:
        done = load_done_ids(output)
    elif output.exists() and output.stat().st_size > 0 and not overwrite:
        raise click.UsageError(
            f"{output} already has plans; pass --resume to continue it or --overwrite to replace it"
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    return output.open("a" if resume else "w", encoding="utf-8"), done


def _plan_one(prompt: str, planner: Planner, opts: dict[str, Any]) -> None:
    prompt = check_prompt(prompt.strip())
    plan = planner.plan(prompt)
    fmt = opts["fmt"] or ("jsonl" if opts["output"] else "text")
    record = PromptRecord(1, prompt, 1, "<argument>")
    if fmt == "jsonl":
        text = json.dumps(plan_line(record, plan), ensure_ascii=False)
    elif fmt == "table":
        text = render_table([(record, plan)])
    else:
        text = render_text(plan)
    if opts["output"]:
        stream, _ = _open_output(opts["output"], opts["resume"], opts["overwrite"])
        with stream:
            stream.write(text + "\n")
    else:
        click.echo(text)


def _plan_file(
    source: str, records: list[PromptRecord], planner: Planner, opts: dict[str, Any]
) -> int:
    output: Path | None = opts["output"]
    if output is not None and source != "-" and output.resolve() == Path(source).resolve():
        raise click.UsageError("-o/--output must not be the input file")
    stream, done = _open_output(output, opts["resume"], opts["overwrite"])
    fmt = opts["fmt"] or "jsonl"
    table_rows: list[tuple[PromptRecord, Plan | LcfixError]] = []
    sink = JsonlSink(stream)

    def emit(record: PromptRecord, result: Plan | LcfixError) -> None:
        if fmt == "table":
            table_rows.append((record, result))
        else:
            sink.write(plan_line(record, result))

    show_bar = sys.stderr.isatty() and not opts["quiet"]
    try:
        with (
            click.progressbar(
                length=len(records), label="planning", file=sys.stderr, show_eta=True, show_pos=True
            )
            if show_bar
            else _NoBar() as bar
        ):
            summary = plan_records(records, planner, emit, done_ids=done, progress=bar.update)
        if fmt == "table":
            stream.write(render_table(table_rows) + "\n")
    finally:
        if stream is not sys.stdout:
            stream.close()
    if not opts["quiet"]:
        s = summary
        parts = [
            f"{s.planned} planned ({s.at_risk} at risk)",
            f"{s.failed} failed",
            f"{s.skipped} skipped (already done)",
        ]
        # LLM-planner counts only mean something when the LLM planner ran.
        for count, label in (
            (s.fallbacks, "fell back to offline"),
            (s.screened, "screened offline"),
            (s.cached, "from cache"),
        ):
            if count:
                parts.append(f"{count} {label}")
        msg = f"lcfix: {s.total} prompts: {', '.join(parts)}, {s.seconds:.2f} s"
        if s.prompt_tokens or s.completion_tokens:
            msg += f", tokens {s.prompt_tokens} in / {s.completion_tokens} out"
        click.echo(msg, err=True)
        for err in summary.errors[:20]:
            click.echo(f"  failed: {err}", err=True)
    return 1 if summary.failed else 0


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


@click.command("plan")
@click.argument("source")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=True, path_type=Path),
    help="Write JSONL plans here (appended to with --resume).",
)
@click.option("--resume", is_flag=True, help="Skip ids already in OUTPUT; append the rest.")
@click.option("--overwrite", is_flag=True, help="Replace an existing OUTPUT.")
@planner_option("auto: the LLM planner when a model is configured.")
@click.option("--model", help="litellm model for the LLM planner (else LCFIX_LLM_MODEL).")
@click.option("--api-base", help="LLM endpoint (else LCFIX_LLM_API_BASE).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "table", "text"]),
    help="Output format [default: text for one prompt, jsonl for files].",
)
@click.option(
    "--input-format",
    type=click.Choice(get_args(InputFormat)),
    help="Input format [default: from the file suffix; txt for stdin].",
)
@click.option("--text", "as_text", is_flag=True, help="Treat SOURCE as a prompt, never a file.")
@click.option("--no-cache", is_flag=True, help="Bypass the LLM plan cache.")
@click.option("--cache-path", help="Plan cache file [default: the user cache directory].")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 512),
    default=16,
    show_default=True,
    help="LLM requests in flight.",
)
@click.option(
    "--rpm", type=click.FloatRange(min=0, min_open=True), help="LLM requests per minute at most."
)
@click.option(
    "--embeddings/--no-embeddings",
    default=None,
    help="MiniLM generalisation in the offline planner "
    "[default: off; LCFIX_EMBEDDINGS=1 turns it on].",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary.")
def plan_cmd(source: str, **opts: Any) -> None:
    """Plan a prompt, or every prompt of a file (.txt, .jsonl, .csv, or - for stdin).

    \b
    lcfix plan "a tea cup of iced coke"
    lcfix plan examples/prompts.txt -o plans.jsonl
    lcfix plan big.jsonl -o plans.jsonl --resume

    Exit status: 0 when every prompt is planned, 1 when some failed, 2 for a usage or
    input error (the message names the file and line).
    """
    as_text = opts.pop("as_text")
    records = None
    if looks_like_file(source, as_text=as_text):
        # Read and check the whole input before building a planner or touching OUTPUT.
        records = read_prompts(source, fmt=opts["input_format"])
    planner = _build_planner(opts)
    try:
        if records is None:
            _plan_one(source, planner, opts)
            return
        code = _plan_file(source, records, planner, opts)
    finally:
        planner.close()
    if code:
        sys.exit(code)


@click.command("schema")
def schema_cmd() -> None:
    """Print the JSON Schema of a Plan."""
    click.echo(json.dumps(plan_json_schema(), indent=2))
