"""The before/after contact sheet: ``DIR/index.html`` and ``DIR/contact_sheet.png``.

Built from the manifest, so a resumed run gets a complete sheet. Per prompt it shows the
prompt, the plan (fragile -> dominant, latent, stages with their switch points), the baseline
images, the lcfix images and, when jobs were scored, one column of concept scores per variant.

The HTML is one file with inline CSS and relative image links: it opens from disk, and the
directory can be zipped or served as is. The PNG needs Pillow (the ``diffusion`` extra); without
it only the HTML is written, with a warning.
"""

from __future__ import annotations

import html
import io
import logging
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from lcfix.manifest import JobRecord, read_records, write_atomic
from lcfix.plans import Plan

log = logging.getLogger("lcfix.report")

HTML_NAME = "index.html"
PNG_NAME = "contact_sheet.png"
MAX_SHEET_ROWS = 200
"""Prompts drawn in the PNG at most (the HTML has every prompt)."""


@dataclass
class SheetRow:
    """One prompt of the sheet."""

    prompt_id: str
    prompt: str
    seed: int | None = None
    plan: Plan | None = None
    images: dict[str, list[str]] = field(default_factory=lambda: {"baseline": [], "lcfix": []})
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    prompt_sent: str | None = None


@dataclass(frozen=True)
class ReportPaths:
    """What ``write_report`` wrote."""

    html: Path
    png: Path | None


def rows_from_records(records: Iterable[JobRecord]) -> list[SheetRow]:
    """Group manifest records into one row per (prompt id, seed), in manifest order."""
    rows: dict[tuple[str, int | None], SheetRow] = {}
    for rec in records:
        row = rows.setdefault(
            (rec.prompt_id, rec.seed), SheetRow(rec.prompt_id, rec.prompt, rec.seed)
        )
        if rec.status == "failed":
            row.errors[rec.variant] = rec.error or "failed"
            continue
        row.images.setdefault(rec.variant, []).extend(rec.files)
        if rec.scores:
            row.scores[rec.variant] = dict(rec.scores)
        if rec.variant == "lcfix":
            row.prompt_sent = rec.prompt_sent
            if rec.plan is not None:
                try:
                    row.plan = Plan.model_validate(rec.plan)
                except ValueError:
                    log.warning(
                        "manifest plan for %s is unreadable; shown without it", rec.prompt_id
                    )
    return list(rows.values())


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}
section.prompt{background:#fff;border:1px solid #ddd;border-radius:8px;
  padding:12px 16px;margin:16px 0}
.prompt-text{font-size:16px;margin:0 0 8px}
.meta{color:#666;font-size:12px}
.plan{display:flex;gap:24px;flex-wrap:wrap;margin:8px 0}
.pair .fragile{color:#0a6;font-weight:600}.pair .dominant{color:#a40;font-weight:600}
.latent{color:#888}
ol.stages{margin:0;padding-left:20px}
.grid{display:flex;gap:16px;flex-wrap:wrap}
.variant{flex:1 1 300px}
.variant h3{font-size:13px;text-transform:uppercase;color:#555;margin:4px 0}
.variant img{max-width:256px;max-height:256px;margin:2px;border:1px solid #ccc}
.error{color:#b00}
table.scores{border-collapse:collapse;font-size:12px}
table.scores td,table.scores th{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.scores th:first-child,table.scores td:first-child{text-align:left}
code{background:#f0f0f0;padding:0 3px}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(rel: str) -> str:
    # Relative, URL-encoded per segment, so the page opens from disk and from a server.
    return "/".join(quote(part) for part in Path(rel).parts)


def _pct(x: float) -> str:
    return f"{x * 100:.1f}".rstrip("0").rstrip(".") + "%"


def _plan_html(plan: Plan | None, prompt_sent: str | None) -> str:
    if plan is None:
        return '<div class="plan"><span class="meta">no plan recorded</span></div>'
    parts = ['<div class="plan">']
    if plan.pairs:
        parts.append('<ul class="pairs">')
        for pair in plan.pairs:
            latent = (
                f' <span class="latent">latent: {_e(pair.latent)}</span>' if pair.latent else ""
            )
            parts.append(
                f'<li class="pair"><span class="fragile">{_e(pair.fragile)}</span> &rarr; '
                f'<span class="dominant">{_e(pair.dominant)}</span>{latent} '
                f'<span class="meta">{_e(pair.pattern)}, severity {pair.severity}/5</span></li>'
            )
        parts.append("</ul>")
    else:
        parts.append('<p class="meta not-at-risk">not at risk: sent as written</p>')
    parts.append('<ol class="stages">')
    start = 0.0
    for stage in plan.stages:
        parts.append(
            f'<li class="stage" data-end="{stage.end:g}"><code>{_e(stage.prompt)}</code> '
            f'<span class="meta">steps {_pct(start)}&ndash;{_pct(stage.end)}</span></li>'
        )
        start = stage.end
    parts.append("</ol>")
    if prompt_sent and prompt_sent != plan.prompt:
        parts.append(f'<p class="meta sent">sent: {_e(prompt_sent)}</p>')
    parts.append("</div>")
    return "".join(parts)


def _scores_html(row: SheetRow) -> str:
    if not row.scores:
        return ""
    variants = [v for v in ("baseline", "lcfix") if v in row.scores]
    concepts: list[str] = []
    for v in variants:
        concepts += [c for c in row.scores[v] if c not in concepts]
    head = "".join(f"<th>{_e(v)}</th>" for v in variants)
    body = "".join(
        f"<tr><td>{_e(c)}</td>"
        + "".join(
            f"<td>{row.scores[v][c]:.3f}</td>" if c in row.scores[v] else "<td>-</td>"
            for v in variants
        )
        + "</tr>"
        for c in concepts
    )
    return (
        f'<table class="scores"><thead><tr><th>concept score</th>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def render_html(rows: Sequence[SheetRow], *, title: str = "lcfix: before and after") -> str:
    """The contact sheet as one self-contained HTML page."""
    at_risk = sum(1 for r in rows if r.plan is not None and r.plan.at_risk)
    n_images = sum(len(v) for r in rows for v in r.images.values())
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="summary meta">{len(rows)} prompts, {at_risk} at risk, {n_images} images. '
        "Baseline: the original prompt, same seed, no staging. "
        '<a href="contact_sheet.png">contact_sheet.png</a></p>',
    ]
    for row in rows:
        seed = f", seed {row.seed}" if row.seed is not None else ""
        out.append(
            f'<section class="prompt" id="prompt-{_e(row.prompt_id)}" '
            f'data-prompt-id="{_e(row.prompt_id)}">'
            f'<h2 class="prompt-text">{_e(row.prompt)}</h2>'
            f'<div class="meta">id {_e(row.prompt_id)}{seed}</div>'
        )
        out.append(_plan_html(row.plan, row.prompt_sent))
        out.append('<div class="grid">')
        for variant in ("baseline", "lcfix"):
            files = row.images.get(variant, [])
            out.append(f'<div class="variant {variant}"><h3>{variant}</h3>')
            for rel in files:
                out.append(
                    f'<a href="{_e(_href(rel))}"><img src="{_e(_href(rel))}" '
                    f'alt="{_e(variant)}: {_e(row.prompt)}" loading="lazy"></a>'
                )
            if variant in row.errors:
                out.append(f'<p class="error">failed: {_e(row.errors[variant])}</p>')
            elif not files:
                out.append('<p class="meta">not generated</p>')
            out.append("</div>")
        out.append("</div>")
        out.append(_scores_html(row))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _caption(row: SheetRow) -> str:
    text = row.prompt
    if row.plan is not None and row.plan.pairs:
        pair = row.plan.pairs[0]
        text += f"   [{pair.fragile} -> {pair.dominant}"
        if pair.latent:
            text += f", not {pair.latent}"
        text += f"; switch at {', '.join(_pct(e) for e in row.plan.switch_points)}]"
    return text


def _fit(img: Any, size: int) -> Any:
    # Scale up or down so the longer side is `size`: tiny test images stay visible.
    scale = size / max(img.width, img.height)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))))


def render_png(out_dir: Path, rows: Sequence[SheetRow], *, thumb: int = 192) -> bytes | None:
    """The contact sheet as PNG bytes: one band per prompt, baseline images then lcfix images.

    Returns None when Pillow is not installed.
    """
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        log.warning(
            "Pillow is not installed: skipping %s (pip install 'lcfix[diffusion]')", PNG_NAME
        )
        return None
    rows = list(rows)[:MAX_SHEET_ROWS]
    try:
        font: Any = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1 has no sized default font
        font = ImageFont.load_default()
    pad, line_h, label_h = 8, 16, 16
    cols = max([2] + [sum(len(v) for v in r.images.values()) for r in rows])
    width = pad + cols * (thumb + pad) + pad  # the extra pad separates baseline from lcfix
    chars = max(20, (width - 2 * pad) // 7)
    captions = [textwrap.wrap(_caption(r), chars)[:3] or [""] for r in rows]
    bands = [len(c) * line_h + label_h + thumb + 2 * pad for c in captions]
    sheet = Image.new("RGB", (width, pad + max(1, sum(bands))), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for row, caption, band in zip(rows, captions, bands, strict=True):
        for n, line in enumerate(caption):
            draw.text((pad, y + n * line_h), line, fill="black", font=font)
        top = y + len(caption) * line_h
        x = pad
        for variant in ("baseline", "lcfix"):
            files = row.images.get(variant, [])
            label = variant if not row.errors.get(variant) else f"{variant}: failed"
            if files or variant in row.errors:
                draw.text((x, top), label, fill="#555", font=font)
            for rel in files:
                try:
                    with Image.open(out_dir / rel) as img:
                        tile = _fit(img.convert("RGB"), thumb)
                except (OSError, ValueError):
                    tile = Image.new("RGB", (thumb, thumb), "#ccc")
                ty = top + label_h
                sheet.paste(tile, (x + (thumb - tile.width) // 2, ty + (thumb - tile.height) // 2))
                x += thumb + pad
            if variant == "baseline" and (files or variant in row.errors):
                x = max(x, pad + thumb + pad) + pad
        y += band
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def write_report(
    out_dir: str | Path,
    records: Iterable[JobRecord] | None = None,
    *,
    title: str = "lcfix: before and after",
    png: bool = True,
    thumb: int = 192,
) -> ReportPaths:
    """Write ``index.html`` (and ``contact_sheet.png``) into ``out_dir`` from its manifest."""
    out = Path(out_dir)
    rows = rows_from_records(read_records(out) if records is None else records)
    html_path = out / HTML_NAME
    write_atomic(html_path, render_html(rows, title=title).encode("utf-8"))
    png_path: Path | None = None
    if png:
        data = render_png(out, rows, thumb=thumb)
        if data is not None:
            png_path = out / PNG_NAME
            write_atomic(png_path, data)
    return ReportPaths(html=html_path, png=png_path)
