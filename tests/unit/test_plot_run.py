"""tools/plot_run.py: report.md and PNGs from a fake run directory with real TensorBoard events."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os

import pytest

from megatron_octo.cli import plot_run
from tests.helpers import run_main
from tests.plot_run_cases import PNG_MAGIC, build_run_dir, write_pretrain


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return build_run_dir(str(tmp_path_factory.mktemp("run")))


def _row(report: str, first_cell: str) -> list[str]:
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in\n{report}")


@pytest.fixture(scope="module")
def report(run_dir, tmp_path_factory):
    # in-process (the tool's own process: tests/e2e/test_plot_run_tool.py)
    out = str(tmp_path_factory.mktemp("out"))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert plot_run.main([run_dir, "--out", out]) == 0
    assert printed.getvalue().strip() == f"wrote {out}/report.md"
    with open(os.path.join(out, "report.md")) as f:
        return out, f.read()


def test_pretraining_rows(report, run_dir):
    _, text = report
    # stage, from, steps, tokens, global tokens at end, final loss, min loss, final val loss, LR at end, wall time
    assert _row(text, "stable") == ["stable", "scratch", "4", "4,096", "4,096", "5.5000", "5.2500", "5.7500",
                                    "1.000E-03", "42 s"]
    long = _row(text, "decay_long")
    assert long[:9] == ["decay_long", "stable", "2", "2,048", "6,144", "4.7500", "4.7500", "4.5000", "2.500E-04"]
    assert long[9].startswith("≈") and long[9].endswith(" s")  # TensorBoard wall times: no demo.json entry
    hybrid = _row(text, "decay_hybrid")  # from metrics.jsonl
    assert hybrid[:9] == ["decay_hybrid", "stable", "2", "2,048", "6,144", "5.0000", "5.0000", "4.8750", "5.000E-04"]
    assert "`decay_hybrid/tensorboard/metrics.jsonl`" in text and "`stable/tensorboard/`" in text


def test_rl_eval_and_comparison(report):
    _, text = report
    rl_long = _row(text, "rl_long †")
    assert rl_long[:7] == ["rl_long †", "decay_long", "3", "-0.250 → 0.500", "25.0 → 62.5", "gsm8k 25.0 → 50.0",
                           "28.0 → 18.5"]
    assert rl_long[7].startswith("≈")
    assert _row(text, "rl_control †")[1:6] == ["stable", "3", "-0.500 → 0.250", "12.5 → 37.5",
                                               "gsm8k 25.0 → 37.5"]
    assert _row(text, "model") == ["model", "protocol", "gsm8k acc % (problems)", "math500 acc % (problems)"]
    assert "| rl_control ‡ | rl | 30.0 (40) | 10.0 (40) |" in text  # eval rows: their own note
    assert "| stable | rl | 10.0 (40) | 5.0 (40) |" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("- **rl_long** † (RL from `decay_long`) vs "
                                                                "**rl_control** †"))
    assert "held-out gsm8k 25.0 → 50.0% vs 25.0 → 37.5% (after RL +12.5 points)" in line
    assert "train accuracy at the last step 62.5% vs 37.5% (+25.0 points)" in line
    se = 100 * ((0.45 * 0.55 + 0.3 * 0.7) / 40) ** 0.5
    assert f"eval gsm8k 45.0% vs 30.0% (+15.0 points, 40 vs 40 problems, s.e. of the difference {se:.1f})" in line
    assert "† rl_control, rl_long: RL on the synthetic addition task" in text
    assert "‡ eval/rl_control, eval/rl_long: synthetic eval set" in text
    assert "Missing: decay_short, rl_short, rl_hybrid (no directory)." in text
    assert "Not exported (no `hf/`)." in text
    assert "python -m megatron_octo.train" in text


def test_pngs(report):
    out, text = report
    from PIL import Image

    for name, title in plot_run.PLOTS.items():
        path = os.path.join(out, "plots", f"{name}.png")
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, path
        with Image.open(path) as im:
            im.verify()
        assert f"![{title}](plots/{name}.png)" in text


def test_partial_run_in_process(tmp_path):
    write_pretrain(str(tmp_path), "stable", 0, [6.0, 5.0], [1e-3, 1e-3], 5.5)
    os.makedirs(tmp_path / "rl_control")  # started, nothing logged yet
    path = plot_run.render_report(str(tmp_path))
    assert path == str(tmp_path / "report.md")
    text = open(path).read()
    assert "Missing: decay_long, decay_short, decay_hybrid, rl_long, rl_short, rl_hybrid (no directory)." in text
    assert "No metrics recorded (no TensorBoard events or metrics.jsonl): rl_control." in text
    assert "No RL run from a decay branch: nothing to compare." in text
    assert "No `eval/<model>/summary.json`." in text
    assert "`plots/rl_reward.png`: not drawn (no data)." in text
    assert os.path.isfile(tmp_path / "plots" / "pretrain_loss.png")
    assert not os.path.exists(tmp_path / "plots" / "rl_reward.png")


def test_not_a_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for target in (empty, tmp_path / "nope"):
        res = run_main(plot_run.main, [target])
        assert res.returncode == 2
        assert res.stderr.startswith("error: ") and str(target) in res.stderr
    assert "not a run directory" in run_main(plot_run.main, [empty]).stderr
    assert not (empty / "report.md").exists()


def test_without_matplotlib(tmp_path, monkeypatch):
    write_pretrain(str(tmp_path), "stable", 0, [6.0, 5.0], [1e-3, 1e-3], 5.5)
    find_spec = plot_run.importlib.util.find_spec
    monkeypatch.setattr(plot_run.importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else find_spec(name, *a))
    text = open(plot_run.render_report(str(tmp_path))).read()
    assert "Plots not drawn: matplotlib is not installed" in text
    assert _row(text, "stable")[:3] == ["stable", "scratch", "2"]
    assert not (tmp_path / "plots").exists()
