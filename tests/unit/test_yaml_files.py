"""One YAML reader for every ``-f``: no aliases or anchors, bounded size and depth.

A "billion laughs" file of a few hundred bytes once grew to gigabytes in
``liftstream flag apply -f``; now every ``-f`` refuses it before expanding anything.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from liftstream.errors import InvalidInputError
from liftstream_cli.control import load_experiment_file
from liftstream_cli.main import app
from liftstream_cli.yaml_files import load_yaml_file
from schemas.limits import MAX_YAML_BYTES, MAX_YAML_DEPTH

#: Nine levels of nine aliases each: 9**9 (387 million) "lol"s once expanded.
ALIAS_BOMB = "\n".join(
    [
        "key: bomb",
        "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]",
        *(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]" for level in range(1, 9)),
        "on_value: *a8",
    ]
)


@pytest.fixture(autouse=True)
def _no_platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIFTSTREAM_HOME", str(tmp_path))
    for name in ("LIFTSTREAM_BOOTSTRAP", "LIFTSTREAM_CONTROL_URL", "LIFTSTREAM_API_KEY"):
        monkeypatch.delenv(name, raising=False)


def _file(tmp_path: Path, text: str | bytes, name: str = "file.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def _reason(path: Path) -> str:
    with pytest.raises(InvalidInputError) as raised:
        load_yaml_file(path)
    [problem] = raised.value.problems
    return problem.reason


def test_an_alias_bomb_is_refused_before_anything_expands(tmp_path: Path) -> None:
    path = _file(tmp_path, ALIAS_BOMB)
    started = time.perf_counter()
    reason = _reason(path)
    assert time.perf_counter() - started < 1.0
    assert "anchor (&a0) at line 2" in reason and "refused" in reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("base: &b {x: 1}\nother: 2\n", "anchor (&b) at line 1"),
        ("a: *nowhere\n", "alias (*nowhere) at line 1"),
        ("base: &b {x: 1}\nmerged:\n  <<: *b\n", "anchor (&b)"),
        ("key: a\nvariants: []\nvariants: [x]\n", "repeats the key 'variants' at line 3"),
        ("outer:\n  a: 1\n  a: 2\n", "repeats the key 'a' at line 3"),
    ],
)
def test_anchors_aliases_and_repeated_keys_are_refused(
    tmp_path: Path, text: str, expected: str
) -> None:
    assert expected in _reason(_file(tmp_path, text))


def test_deep_and_large_files_are_refused(tmp_path: Path) -> None:
    deep = "[" * (MAX_YAML_DEPTH + 1) + "]" * (MAX_YAML_DEPTH + 1)
    assert f"nested deeper than {MAX_YAML_DEPTH} levels" in _reason(_file(tmp_path, deep))
    very_deep = "[" * 200_000
    assert f"nested deeper than {MAX_YAML_DEPTH}" in _reason(_file(tmp_path, very_deep, "v.yaml"))
    large = "a: '" + "x" * MAX_YAML_BYTES + "'\n"
    assert f"larger than {MAX_YAML_BYTES} bytes" in _reason(_file(tmp_path, large, "big.yaml"))
    assert "not UTF-8" in _reason(_file(tmp_path, b"a: \xff\xfe\n", "latin.yaml"))


def test_plain_definitions_still_load(tmp_path: Path) -> None:
    text = "key: f\nvalue_type: json\non_value: {colour: blue, sizes: [1, 2]}\n"
    assert load_yaml_file(_file(tmp_path, text)) == {
        "key": "f",
        "value_type": "json",
        "on_value": {"colour": "blue", "sizes": [1, 2]},
    }
    nested = "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH
    assert load_yaml_file(_file(tmp_path, nested, "n.yaml")) is not None


@pytest.mark.parametrize(
    "command",
    [["flag", "apply", "-f"], ["metric", "apply", "-f"], ["apply", "-f"]],
)
def test_every_cli_file_option_refuses_the_bomb_naming_the_file(
    tmp_path: Path, command: list[str]
) -> None:
    path = _file(tmp_path, ALIAS_BOMB, "bomb.yaml")
    result = CliRunner().invoke(app, [*command, str(path)])
    assert result.exit_code == 1
    assert "bomb.yaml" in result.stderr
    assert "aliases and anchors are refused" in result.stderr
    assert "Traceback" not in result.output


def test_experiment_files_keep_their_subject(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError) as raised:
        load_experiment_file(_file(tmp_path, ALIAS_BOMB, "exp.yaml"))
    assert str(raised.value).startswith(f"{tmp_path / 'exp.yaml'} is not a valid experiment:")
