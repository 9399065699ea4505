"""The tiers: `make test-fast` selects exactly the in-process tier (tests/unit), and a test there that starts a
process fails instead of running."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from _pytest.mark.expression import Expression

from tests.conftest import IN_PROCESS_TIER, ProcessLaunchInInProcessTier, tier_of
from tests.helpers import ROOT


def _make_command(target: str) -> list[str]:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(rf"^{target}:.*\n\t(.+)$", text, re.M)
    assert recipe, f"no {target} target in the Makefile"
    return shlex.split(recipe.group(1))


def _selected_by(argv: list[str], item) -> bool:
    """Whether pytest run with ``argv`` selects ``item`` (its marker expression and paths)."""
    argv = argv[argv.index("pytest") + 1:]
    expr = argv[argv.index("-m") + 1] if "-m" in argv else None
    names = {m.name for m in item.iter_markers()}
    if expr is not None and not Expression.compile(expr).evaluate(lambda name: name in names):
        return False
    paths = [a for a in argv if a.startswith("tests")]
    return any(str(item.path).startswith(str(ROOT / p)) for p in paths)


def test_every_collected_test_is_in_the_tier_the_fast_target_selects_or_marked_out_of_it(request):
    fast = _make_command("test-fast")
    full = _make_command("test")
    items = request.session.items
    assert items
    for item in items:
        in_process = tier_of(item.path) == IN_PROCESS_TIER
        assert (item.get_closest_marker("process") is None) == in_process, item.nodeid
        assert _selected_by(fast, item) == in_process, item.nodeid  # nothing marked leaks into test-fast
        assert _selected_by(full, item), item.nodeid  # and make test runs everything


def test_a_process_started_in_the_in_process_tier_fails_naming_the_test(request):
    with pytest.raises(ProcessLaunchInInProcessTier, match=re.escape(request.node.nodeid)):
        subprocess.run(["true"], timeout=10)
    import multiprocessing

    with pytest.raises(ProcessLaunchInInProcessTier):
        multiprocessing.get_context("spawn").Process(target=print).start()
    with pytest.raises(ProcessLaunchInInProcessTier):
        multiprocessing.get_context("fork").Process(target=print).start()


def test_units_of_work_are_modules_but_the_slurm_tier_is_one():
    from tests.conftest import union_seconds, unit_of_work

    assert unit_of_work("tests/e2e/test_demo.py::test_x[a::b]") == "tests/e2e/test_demo.py"
    assert unit_of_work("tests/unit/test_config.py::TestA::test_b") == "tests/unit/test_config.py"
    # the Slurm modules start and stop one cluster: never two of them at once on two workers
    assert unit_of_work("tests/slurm/test_sbatch.py::test_a") == unit_of_work("tests/slurm/test_two_nodes.py::t")
    # a tier's wall time: overlapping spans of two workers count once, gaps not at all
    assert union_seconds([(0.0, 2.0), (1.0, 3.0), (5.0, 6.0)]) == 4.0


def test_shared_dir_builds_once_and_starts_over_after_a_failed_build(tmp_path, monkeypatch):
    from tests.conftest import shared_dir

    class Factory:  # tmp_path_factory's one method shared_dir uses
        def getbasetemp(self):
            return tmp_path / "popen-gw0"

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    (tmp_path / "popen-gw0").mkdir()
    builds = []

    def failing(d):
        (d / "half").write_text("x")
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        shared_dir(Factory(), "fam", failing)

    def build(d):
        builds.append(sorted(p.name for p in d.iterdir()))  # what a failed build left: nothing
        (d / "ckpt").write_text("weights")

    first = shared_dir(Factory(), "fam", build)
    second = shared_dir(Factory(), "fam", build)  # another worker: same directory, no second build
    assert first == second == tmp_path / "shared-fam"  # in the run's common directory, not the worker's
    assert builds == [[]] and (first / "ckpt").read_text() == "weights"
