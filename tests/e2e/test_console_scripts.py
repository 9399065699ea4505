"""Every console script of pyproject.toml is installed and runs, and tools/*.py run as thin shims over
the same functions (no sys.path tricks: the package is imported as installed)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT, run

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent
TOOLS = sorted(p.name for p in (ROOT / "tools").glob("*.py"))


def test_every_command_has_a_console_script():
    expected = {"octo-train", "octo-rl", "octo-eval", "octo-convert-to-hf", "octo-convert-from-hf", "octo-plan",
                "octo-plot-run", "octo-data-stats", "octo-compare-paper", "octo-grader-agreement"}
    assert expected <= set(SCRIPTS)
    # Each tool has its console script.
    assert {f"octo-{t[:-3].replace('_', '-')}" for t in TOOLS} <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_runs(name, tmp_path):
    exe = BIN / name
    assert exe.is_file(), f"{exe} is not installed: run `pip install -e .` (make test does) after changing pyproject.toml"
    # Outside the checkout: an installed package needs none of its files.
    res = run([str(exe), "--help"], timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout.lower()


@pytest.mark.parametrize("tool", TOOLS)
def test_tool_shim_runs(tool):
    res = run([sys.executable, f"tools/{tool}", "--help"], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "usage:" in res.stdout.lower()


def test_console_script_and_tool_give_the_same_plan(tmp_path):
    args = ["--model", "llama3.2-3b", "--gpus", "64", "--tokens", "200e9"]
    a = run([str(BIN / "octo-plan"), *args], timeout=120, cwd=tmp_path)
    b = run([sys.executable, "tools/plan.py", *args], timeout=120)
    assert a.returncode == b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    assert a.stdout == b.stdout and "GPU-hours" in a.stdout


def test_no_sys_path_manipulation():
    offenders = [str(p.relative_to(ROOT)) for d in ("megatron_octo", "tokenization", "tools", "benchmarks", "tests")
                 for p in (ROOT / d).rglob("*.py")
                 if "sys.path.insert" in p.read_text() and p.name != Path(__file__).name
                 # runs under `python -I -S` (OctoThinker's pinned environment, isolated on purpose): no
                 # PYTHONPATH and no site, so its directories can only be put on sys.path by hand
                 and p.relative_to(ROOT).as_posix() != "tests/scripts/octothinker_reference.py"]
    assert offenders == []
