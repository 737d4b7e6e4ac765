"""``lcfix export``: plans as A1111 prompt editing or ComfyUI nodes, and A1111 prompts as plans."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from lcfix.a1111 import parse_a1111, parse_if_edited, to_a1111
from lcfix.cli.options import planner_option
from lcfix.comfy import MODEL_TYPES, SCHEDULERS, export_comfy
from lcfix.errors import InputError, LcfixError
from lcfix.inputs import json_objects, read_prompts
from lcfix.planner import Planner, get_planner
from lcfix.plans import Plan, validate_plan_dict

_PROMPT_FILES = (".txt", ".csv", ".jsonl", ".ndjson")


def _read_plan_lines(path: Path) -> list[tuple[str, Plan | dict[str, Any]]]:
    """JSONL from ``lcfix plan -o``: each line a plan (with an id), or a prompt to plan."""
    out: list[tuple[str, Plan | dict[str, Any]]] = []
    for n, obj in json_objects(path.read_text(encoding="utf-8"), path):
        rid = str(obj.pop("id", n))
        if "stages" in obj:
            try:
                out.append((rid, validate_plan_dict(obj)))
            except LcfixError as exc:
                raise InputError(str(exc), path=path, line=n) from exc
        elif "error" in obj:
            click.echo(f"lcfix: {path}:{n}: skipped (planning failed: {obj['error']})", err=True)
        elif isinstance(obj.get("prompt"), str):
            out.append((rid, obj))
        else:
            raise InputError("neither a plan nor a prompt", path=path, line=n, field="prompt")
    return out


def _plans(source: str, opts: dict[str, Any]) -> list[tuple[str, Plan]]:
    path = Path(source)
    items: list[tuple[str, Plan | dict[str, Any]]]
    if path.is_file() and path.suffix.lower() in (".jsonl", ".ndjson"):
        items = _read_plan_lines(path)
    elif path.is_file() or (" " not in source and source.lower().endswith(_PROMPT_FILES)):
        items = [(str(r.id), {"prompt": r.prompt}) for r in read_prompts(source)]
    else:
        items = [("1", {"prompt": source})]
    planner: Planner | None = None
    out: list[tuple[str, Plan]] = []
    try:
        for rid, item in items:
            if isinstance(item, Plan):
                out.append((rid, item))
                continue
            prompt = str(item["prompt"]).strip()
            plan = parse_if_edited(prompt, steps=opts["steps"])
            if plan is None:
                planner = planner or get_planner(opts["planner"], model=opts["model"])
                plan = planner.plan(prompt)
            out.append((rid, plan))
    finally:
        if planner is not None:
            planner.close()
    return out


def _clip(value: str) -> tuple[str, int]:
    node, _, slot = value.partition(":")
    if not node or not slot.isdigit():
        raise click.BadParameter("write NODE:OUTPUT, e.g. 4:1", param_hint="--clip")
    return node, int(slot)


def _render(plan: Plan, opts: dict[str, Any]) -> Any:
    if opts["to"] == "a1111":
        return to_a1111(plan)
    return export_comfy(
        plan,
        steps=opts["steps"] or 20,
        scheduler=opts["scheduler"],
        model_type=opts["model_type"],
        shift=opts["shift"],
        clip=_clip(opts["clip"]),
    )


@click.command("export")
@click.argument("source", required=False)
@click.option(
    "--to",
    type=click.Choice(["a1111", "comfy"]),
    help="a1111: [from:to:when] prompt editing; comfy: ComfyUI API-format nodes.",
)
@click.option(
    "--from-a1111",
    "from_a1111",
    metavar="PROMPT",
    help="Parse an A1111 prompt-editing prompt; prints its Plan (or exports it with --to).",
)
@click.option(
    "--steps",
    type=click.IntRange(1, 10000),
    help="Sampling steps: for absolute A1111 steps, and ComfyUI's switch [default: 20].",
)
@click.option(
    "--scheduler",
    type=click.Choice(SCHEDULERS),
    default="normal",
    show_default=True,
    help="ComfyUI scheduler the sigma percents are computed for.",
)
@click.option(
    "--model-type",
    type=click.Choice(MODEL_TYPES),
    default="sdxl",
    show_default=True,
    help="Noise schedule: sd/sdxl (discrete) or flow (shifted flow matching).",
)
@click.option("--shift", type=float, help="Flow shift for --model-type flow [default: 3.0].")
@click.option(
    "--clip",
    default="4:1",
    show_default=True,
    help="ComfyUI link to your CLIP output, NODE:OUTPUT.",
)
@planner_option("Planner for prompts that are not plans yet.")
@click.option("--model", help="litellm model for the LLM planner (else LCFIX_LLM_MODEL).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here.")
def export_cmd(source: str | None, **opts: Any) -> None:
    """Export plans for other tools, or read an A1111 prompt as a plan.

    SOURCE is a JSONL file of plans (from lcfix plan -o), a prompt file, or a prompt.
    Prompts already written in A1111 prompt editing keep their schedule.

    \b
    lcfix export plans.jsonl --to a1111 > webui_prompts.txt
    lcfix export "a tea cup of iced coke" --to comfy --scheduler karras --steps 30
    lcfix export --from-a1111 "[tea cup:a tea cup of iced coke:0.25]"
    lcfix export --from-a1111 "a [cup:glass:8] of coke" --steps 30 --to comfy

    ComfyUI's timestep ranges are fractions of the sigma range, not of the steps; the export
    converts each switch for the given scheduler, steps and model type, and says so in its
    "_lcfix_note" key.
    """
    text = opts.pop("from_a1111")
    if (text is None) == (source is None):
        raise click.UsageError("give SOURCE or --from-a1111 PROMPT (not both)")
    if text is None and opts["to"] is None:
        raise click.UsageError("--to is required: a1111 or comfy")
    if opts["shift"] is not None and opts["model_type"] != "flow":
        raise click.UsageError("--shift applies to --model-type flow only")
    if text is not None:
        plans = [("1", parse_a1111(text, steps=opts["steps"]))]
    else:
        assert source is not None
        plans = _plans(source, opts)
    if opts["to"] is None:
        lines = [p.model_dump_json(indent=2) for _, p in plans]
    elif len(plans) == 1 and (text is not None or not Path(str(source)).is_file()):
        rendered = _render(plans[0][1], opts)
        lines = [rendered if isinstance(rendered, str) else json.dumps(rendered, indent=2)]
    elif opts["to"] == "a1111":
        lines = [str(_render(p, opts)) for _, p in plans]  # one prompt per line, for WebUI
    else:
        lines = [json.dumps({"id": rid, "workflow": _render(p, opts)}) for rid, p in plans]
    out = "\n".join(lines) + "\n"
    if opts["output"] is not None:
        opts["output"].write_text(out, encoding="utf-8")
    else:
        click.echo(out, nl=False)
