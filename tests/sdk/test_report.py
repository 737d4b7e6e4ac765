from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from lcfix.a1111 import parse_a1111
from lcfix.manifest import JobRecord, Manifest
from lcfix.report import render_html, rows_from_records, write_report
from lcfix.testing import sample_plan, tiny_png

MAGENTA = (255, 0, 255)
CYAN = (0, 255, 255)


def _populate(out: Path) -> list[str]:
    """Two prompts, baseline + lcfix each; returns every image path written."""
    plans = {
        "1": sample_plan(),
        "2": parse_a1111("a red fox in an autumn forest"),
    }
    written = []
    with Manifest(out) as m:
        for pid, plan in plans.items():
            for variant, colour in (("baseline", CYAN), ("lcfix", MAGENTA)):
                rel = f"images/{pid} {variant}&<0>.png"  # a name that needs escaping
                (out / "images").mkdir(exist_ok=True)
                (out / rel).write_bytes(tiny_png(64, 64, colour))
                written.append(rel)
                m.append(
                    JobRecord(
                        key=f"{pid}-{variant}",
                        status="done",
                        prompt_id=pid,
                        variant=variant,
                        prompt=plan.prompt,
                        seed=7,
                        backend="fake:x",
                        files=[rel],
                        plan=plan.model_dump(mode="json") if variant == "lcfix" else None,
                        prompt_sent=plan.rewrites.natural if variant == "lcfix" else plan.prompt,
                        scores={"tea cup": 0.8 if variant == "lcfix" else 0.2}
                        if pid == "1"
                        else None,
                    )
                )
        m.append(
            JobRecord(
                key="3-lcfix",
                status="failed",
                prompt_id="3",
                variant="lcfix",
                prompt="<b>bold</b> prompt",
                backend="fake:x",
                error="quota <exceeded>",
            )
        )
    return written


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.classes: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        self.classes += (a.get("class") or "").split()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collect:
    c = _Collect()
    c.feed(html)
    return c


def test_html_references_every_image_relatively(tmp_path: Path) -> None:
    written = _populate(tmp_path)
    paths = write_report(tmp_path)
    html = paths.html.read_text()
    doc = _parse(html)
    from urllib.parse import unquote

    assert sorted(unquote(s) for s in doc.imgs) == sorted(written)
    assert all(not s.startswith(("/", "file:", "http")) for s in doc.imgs)
    assert doc.classes.count("prompt") == 3
    for cls in ("fragile", "dominant", "latent", "stage", "baseline", "lcfix", "scores", "error"):
        assert cls in doc.classes, cls
    text = "".join(doc.text)
    assert "tea cup" in text and "iced coke" in text and "glass" in text
    assert "<b>bold</b> prompt" in text and "<b>" not in html.replace("&lt;b&gt;", "")
    assert "0.800" in text and "0.200" in text
    assert "http" not in html  # self-contained: no external stylesheet, script or font


def test_rows_group_variants_and_keep_the_plan(tmp_path: Path) -> None:
    _populate(tmp_path)
    from lcfix.manifest import read_records

    rows = rows_from_records(read_records(tmp_path))
    assert [r.prompt_id for r in rows] == ["1", "2", "3"]
    assert rows[0].plan == sample_plan()
    assert len(rows[0].images["baseline"]) == 1 and len(rows[0].images["lcfix"]) == 1
    assert rows[2].errors == {"lcfix": "quota <exceeded>"}
    html = render_html(rows)
    assert html.count('class="stage"') == len(sample_plan().stages) + 1


def test_contact_sheet_png_shows_both_variants(tmp_path: Path) -> None:
    from PIL import Image

    _populate(tmp_path)
    paths = write_report(tmp_path, thumb=64)
    assert paths.png is not None
    with Image.open(paths.png) as img:
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 20) or []}
    assert MAGENTA in colours and CYAN in colours


def test_png_is_skipped_without_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("no PIL")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    _populate(tmp_path)
    monkeypatch.setattr(builtins, "__import__", no_pil)
    paths = write_report(tmp_path)
    assert paths.png is None and paths.html.exists()


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--hide-scrollbars",
    "--allow-file-access-from-files",
]


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None,
    reason="headless Chromium is not installed (Debian package 'chromium'; .ci/run installs it)",
)
def test_index_renders_in_headless_chromium(tmp_path: Path) -> None:
    from PIL import Image

    out = tmp_path / "run"
    out.mkdir()
    written = _populate(out)
    paths = write_report(out)
    url = paths.html.resolve().as_uri()
    browser = _chromium()
    assert browser is not None
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [browser, *_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    doc = _parse(dom.stdout)
    assert doc.classes.count("prompt") == 3
    assert len(doc.imgs) == len(written)
    assert {"fragile", "dominant", "stage", "baseline", "lcfix"} <= set(doc.classes)

    shot = tmp_path / "shot.png"
    res = subprocess.run(
        [
            browser,
            *_FLAGS,
            f"--user-data-dir={profile}",
            f"--screenshot={shot}",
            "--window-size=1200,1600",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert res.returncode == 0 and shot.exists(), res.stderr[-2000:]
    with Image.open(shot) as img:
        colours = {c for _, c in img.convert("RGB").getcolors(1 << 24) or []}
    # The images were loaded through their relative links: their colours are on screen.
    assert MAGENTA in colours and CYAN in colours
