from __future__ import annotations

import io
from pathlib import Path

import pytest

from lcfix.errors import InputError
from lcfix.inputs import read_prompts


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def test_txt_skips_blank_lines_and_comments_and_uses_line_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "p.txt", "# header\n\nA tea cup of iced coke\n  \nA red fox  \n")
    records = read_prompts(path)
    assert [(r.id, r.prompt, r.line) for r in records] == [
        (3, "A tea cup of iced coke", 3),
        (5, "A red fox", 5),
    ]


def test_jsonl_takes_id_and_ignores_other_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.jsonl", '{"id": "a", "prompt": "x y", "extra": 1}\n\n{"prompt": "z"}\n'
    )
    records = read_prompts(path)
    assert [(r.id, r.prompt, r.line) for r in records] == [("a", "x y", 1), (3, "z", 3)]


def test_csv_with_optional_id(tmp_path: Path) -> None:
    path = write(tmp_path, "p.csv", 'id,prompt,note\nq1,"A tea cup, of coke",x\n,A fox,\n')
    records = read_prompts(path)
    assert [(r.id, r.prompt, r.line) for r in records] == [
        ("q1", "A tea cup, of coke", 2),
        (3, "A fox", 3),
    ]


def test_stdin_is_read_as_txt() -> None:
    records = read_prompts("-", stdin=io.StringIO("one\n#c\ntwo\n"))
    assert [r.prompt for r in records] == ["one", "two"]
    assert records[0].source == "<stdin>"


@pytest.mark.parametrize(
    ("name", "content", "line", "field", "needle"),
    [
        ("bad.txt", b"ok\n\xff\xfe broken\n", 2, None, "undecodable"),
        ("bad.csv", "id,text\n1,a\n", 1, "prompt", "no 'prompt' column"),
        ("bad.jsonl", '{"prompt": "a"}\n["not", "an", "object"]\n', 2, None, "JSON object"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": \n', 2, None, "not valid JSON"),
        ("bad.jsonl", '{"prompt": "a"}\n{"prompt": "   "}\n', 2, "prompt", "empty prompt"),
        ("bad.jsonl", '{"prompt": 3}\n', 1, "prompt", "must be a string"),
        ("bad.jsonl", '{"text": "a"}\n', 1, "prompt", "missing"),
        ("bad.csv", "id,prompt\n1,ok\n2,\n", 3, "prompt", "empty prompt"),
        (
            "bad.jsonl",
            '{"id": 1, "prompt": "a"}\n{"id": 1, "prompt": "b"}\n',
            2,
            "id",
            "duplicate id",
        ),
        ("bad.txt", "ok\n" + "x" * 4001 + "\n", 2, "prompt", "limit is 4000"),
    ],
)
def test_bad_input_names_file_line_and_field(
    tmp_path: Path, name: str, content: str | bytes, line: int, field: str | None, needle: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(InputError) as info:
        read_prompts(path)
    err = info.value
    assert err.path == str(path) and err.line == line and err.field == field
    assert needle in str(err)
    assert str(err).startswith(f"{path}:{line}: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file") as info:
        read_prompts(tmp_path / "nope.txt")
    assert info.value.path == str(tmp_path / "nope.txt")


def test_json_array_file_is_refused_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\.jsonl"):
        read_prompts(write(tmp_path, "p.json", '["a"]'))
