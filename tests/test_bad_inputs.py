"""The bad-input corpus in tests/bad_inputs/: each case exits 2 with its exact one-line message.

Every case runs in a fresh copy of the corpus (configs name their data by relative path) and
must leave every file byte-for-byte as it was, with no run folder or database created.
Training is replaced by a function that fails loudly, so a case that slips through validation
cannot start a network.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import tuner.engine.worker
from tuner.cli.commands import cli
from tuner.config.yamlfile import parse_yaml
from tuner.errors import ConfigError

from .conftest import tree_digest

CORPUS = Path(__file__).resolve().parent / "bad_inputs"
CASES: list[dict[str, Any]] = yaml.safe_load((CORPUS / "cases.yaml").read_text())


def test_the_corpus_is_large_and_every_case_is_distinct():
    assert len(CASES) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)
    named = {Path(a).name for c in CASES for a in c["args"] if a.startswith("configs/")}
    on_disk = {p.name for p in (CORPUS / "configs").iterdir()}
    assert on_disk - {"good.yaml"} <= named, "every config in the corpus has a case"


def _no_training(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("a bad input reached training")


@pytest.fixture
def corpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = (tmp_path / "corpus").resolve()
    shutil.copytree(CORPUS, root)
    monkeypatch.chdir(root)
    # Trials run in a worker process; a bad input must be refused before one is started.
    monkeypatch.setattr(tuner.engine.worker.Worker, "__call__", _no_training)
    return root


def _paths(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(corpus: Path, case: dict[str, Any]):
    before, paths = tree_digest(corpus), _paths(corpus)
    started = time.perf_counter()
    result = CliRunner().invoke(cli, case["args"])
    seconds = time.perf_counter() - started
    expected = case["error"].replace("{root}", str(corpus))
    assert result.stderr == f"{expected}\n"
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output
    assert tree_digest(corpus) == before
    assert _paths(corpus) == paths, "no run folder or database is created"
    if case["name"] == "alias_bomb":
        # A guard against expanding the aliases (billions of items), not a timing target.
        assert seconds < 5


@pytest.mark.parametrize(
    ("name", "error_type"),
    [("alias_bomb", "ConfigError"), ("data_mixed_numeric", "DataError"), ("vector_nan", "")],
)
def test_debug_shows_the_traceback(corpus: Path, name: str, error_type: str):
    case = next(c for c in CASES if c["name"] == name)
    result = CliRunner().invoke(cli, [*case["args"], "--debug"])
    assert result.exit_code != 0 and result.exc_info is not None
    assert type(result.exception).__name__ == (error_type or "UsageError")
    assert str(result.exception) == case["error"].removeprefix("error: ").replace(
        "{root}", str(corpus)
    )


def test_the_alias_bomb_is_refused_by_the_parser_itself():
    text = (CORPUS / "configs" / "alias_bomb.yaml").read_text()
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"YAML aliases \(\*a\) are not supported"):
        parse_yaml(text, "alias_bomb.yaml")
    assert time.perf_counter() - started < 5
