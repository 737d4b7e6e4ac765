"""``lcfix generate``: plan a prompt, generate it on a backend, save images with sidecars."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import click

import lcfix.planner
from lcfix.adapters import load_adapter
from lcfix.adapters.base import GenerationResult, ImageAdapter, StagingMode
from lcfix.cli.options import planner_option
from lcfix.dispatch import generate
from lcfix.errors import ConfigError
from lcfix.inputs import PromptRecord, looks_like_file, read_prompts
from lcfix.jobs import Progress, run_jobs
from lcfix.outputs import SavedImage, save_result
from lcfix.planner import Planner


@dataclass(frozen=True)
class GenerateSettings:
    """The generation settings shared by every prompt of one command."""

    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    num_images: int = 1
    staging: StagingMode = "auto"


def parse_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``-o KEY=VALUE`` pairs as a dict; a VALUE that parses as JSON is used as JSON."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="-o/--option")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        out[key.strip()] = value
    return out


def build_adapter(backend: str, options: dict[str, Any], api_base: str | None) -> ImageAdapter:
    """The adapter for ``backend``, with ``--api-base`` only when it was given."""
    kwargs: dict[str, Any] = {"options": options}
    if api_base:
        kwargs["api_base"] = api_base
    try:
        return load_adapter(backend, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"backend {backend!r} does not accept these settings: {exc}") from exc


def generate_one(
    prompt: str,
    *,
    planner: Planner,
    adapter: ImageAdapter,
    out_dir: Path,
    settings: GenerateSettings,
    stem: str | None = None,
) -> tuple[GenerationResult, list[SavedImage]]:
    """Plan, generate and save one prompt."""
    plan = planner.plan(prompt)
    result = generate(
        plan,
        adapter,
        negative_prompt=settings.negative_prompt,
        width=settings.width,
        height=settings.height,
        seed=settings.seed,
        num_images=settings.num_images,
        staging=settings.staging,
    )
    return result, save_result(result, out_dir, stem=stem)


def echo_result(result: GenerationResult, saved: list[SavedImage]) -> None:
    plan = result.plan
    if plan.at_risk:
        pairs = "; ".join(
            f"{p.fragile!r} <- {p.dominant!r}" + (f" (latent: {p.latent})" if p.latent else "")
            for p in plan.pairs
        )
        click.echo(f"at risk: {pairs}")
    else:
        click.echo("not at risk: sent the prompt as written")
    click.echo(f"staging: {result.staging}")
    click.echo(f"sent:    {result.prompt_sent}")
    if result.revised_prompt:
        click.echo(f"revised: {result.revised_prompt}")
    for item in saved:
        click.echo(f"saved {item.path} (sidecar {item.sidecar.name})")


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def show_warnings() -> None:
    """Print lcfix's warnings (retries, dropped concepts) on stderr, once per process."""
    logger = logging.getLogger("lcfix")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler(logging.WARNING)
        logger.addHandler(handler)
        logger.setLevel(min(logger.level or logging.WARNING, logging.WARNING))


def _run_files(records: list[PromptRecord], **kwargs: Any) -> None:
    """Every record through the resumable job runner, with a progress bar on a TTY."""
    bar: Any = None

    def progress(p: Progress) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(
                length=p.total, label="generating", file=sys.stderr, show_eta=True, show_pos=True
            )
            bar.__enter__()
        bar.update(p.finished - bar.pos)

    try:
        summary = run_jobs(records, progress=progress, **kwargs)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(summary.describe(), err=True)
    if not summary.ok:
        sys.exit(1)


@click.command("generate")
@click.argument("source", metavar="PROMPT|INPUT")
@click.option("--backend", "-b", required=True, help="NAME:MODEL, e.g. openai:gpt-image-1.")
@click.option("--api-base", default=None, help="Base URL of the API (proxy, gateway, loopback).")
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the images and their JSON sidecars.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed (where supported).")
@click.option("--num-images", "-n", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--negative-prompt", default=None, help="What the image must not show.")
@click.option("--width", type=click.IntRange(min=1), default=None)
@click.option("--height", type=click.IntRange(min=1), default=None)
@click.option(
    "--staging",
    type=click.Choice(get_args(StagingMode)),
    default="auto",
    show_default=True,
    help="native: inside sampling (local); emulate: two requests (hosted); off: rewrite only.",
)
@click.option(
    "-o", "--option", "options", multiple=True, metavar="KEY=VALUE", help="A backend option."
)
@planner_option(dest="planner_kind")
@click.option("--model", "planner_model", default=None, help="The LLM for --planner llm/auto.")
@click.option(
    "--compare",
    is_flag=True,
    help="Also generate the baseline (original prompt, same seed) and write index.html "
    "and contact_sheet.png side by side.",
)
@click.option("--retry-failed", is_flag=True, help="Retry jobs the manifest records as failed.")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs in flight for files [default: 1 local, 4 hosted].",
)
@click.option(
    "--rpm", type=click.FloatRange(min=0, min_open=True), default=None, help="Requests/minute."
)
@click.option("--text", "as_text", is_flag=True, help="Treat the argument as a prompt, not a file.")
def generate_cmd(
    source: str,
    backend: str,
    api_base: str | None,
    out_dir: Path,
    seed: int | None,
    num_images: int,
    negative_prompt: str | None,
    width: int | None,
    height: int | None,
    staging: StagingMode,
    options: tuple[str, ...],
    planner_kind: lcfix.planner.PlannerKind,
    planner_model: str | None,
    compare: bool,
    retry_failed: bool,
    concurrency: int | None,
    rpm: float | None,
    as_text: bool,
) -> None:
    """Plan a PROMPT, or every prompt of an INPUT file (.txt, .jsonl, .csv, - for stdin),
    generate on a backend and save each image with a JSON sidecar.

    For files, DIR/manifest.jsonl records every job: re-running is idempotent and resumes
    after a crash or kill without redoing finished jobs.

    \b
    lcfix generate "a tea cup of iced coke" --backend openai:gpt-image-1 --out out/
    lcfix generate "a tea cup of iced coke" -b stability:sd3.5-large --seed 7 --out out/
    lcfix generate prompts.txt -b openai:gpt-image-1 --out out/ --compare
    lcfix generate "..." -b openai:gpt-image-1 -o quality=high --api-base http://127.0.0.1:8080/v1
    """
    show_warnings()
    backend_options = parse_options(options)
    is_file = looks_like_file(source, as_text=as_text)
    if compare or retry_failed or is_file:
        records = (
            read_prompts(source) if is_file else [PromptRecord(1, source.strip(), 1, "<argument>")]
        )
        _run_files(
            records,
            backend=backend,
            api_base=api_base,
            backend_options=backend_options,
            out_dir=out_dir,
            planner=planner_kind,
            model=planner_model,
            num_images=num_images,
            seed=seed,
            negative_prompt=negative_prompt,
            width=width,
            height=height,
            staging=staging,
            compare=compare,
            retry_failed=retry_failed,
            concurrency=concurrency,
            rpm=rpm,
        )
        return
    prompt = source
    settings = GenerateSettings(negative_prompt, width, height, seed, num_images, staging)
    adapter = build_adapter(backend, backend_options, api_base)
    try:
        planner = lcfix.planner.get_planner(planner_kind, model=planner_model)
        try:
            result, saved = generate_one(
                prompt, planner=planner, adapter=adapter, out_dir=out_dir, settings=settings
            )
        finally:
            planner.close()
    finally:
        adapter.close()
    echo_result(result, saved)
