"""Test tiers and session fixtures shared by end-to-end tests.

Tiers: a test's folder is its tier. ``tests/unit`` is the in-process tier (``make test-fast``): its
tests may not start a process, and the guard below fails any that tries. Every other folder's tests
are marked ``process`` (they start interpreters, torchrun or the real CLIs) plus their folder's own
marker, so ``-m "not process"`` selects exactly the in-process tier.
"""

from __future__ import annotations

import multiprocessing.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import ROOT, run, run_train

TESTS = Path(__file__).resolve().parent
IN_PROCESS_TIER = "unit"
# folder -> the markers its tests get besides ``process``
TIER_MARKERS = {"unit": (), "process": (), "e2e": ("e2e",), "distributed": ("distributed",),
                "gpu_sim": ("gpu_sim",), "reliability": ("reliability",), "slurm": ("slurm",)}


def tier_of(path) -> str:
    rel = Path(path).resolve().relative_to(TESTS)
    if len(rel.parts) < 2 or rel.parts[0] not in TIER_MARKERS:
        raise pytest.UsageError(f"{path}: a test module lives in one of the tier folders "
                                f"tests/{{{','.join(TIER_MARKERS)}}}")
    return rel.parts[0]


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item.path)
        if tier != IN_PROCESS_TIER:
            item.add_marker("process")
        for name in TIER_MARKERS[tier]:
            item.add_marker(name)


class ProcessLaunchInInProcessTier(RuntimeError):
    pass


def _refuse_processes(what: str) -> pytest.MonkeyPatch:
    """Patch every way of starting a process to raise, naming ``what``; undo with the returned patch."""
    def refuse(*args, **kwargs):
        raise ProcessLaunchInInProcessTier(
            f"{what} started a process, but tests/{IN_PROCESS_TIER} is the in-process tier: "
            f"test it in-process or move it to a process tier folder")

    mp = pytest.MonkeyPatch()
    mp.setattr(subprocess.Popen, "_execute_child", refuse)
    mp.setattr(multiprocessing.util, "spawnv_passfds", refuse)
    mp.setattr(os, "fork", refuse)
    for name in ("posix_spawn", "posix_spawnp", "system"):
        if hasattr(os, name):
            mp.setattr(os, name, refuse)
    return mp


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """Importing an in-process tier module starts no process either (``make test-fast`` collects them)."""
    guarded = isinstance(collector, pytest.Module) and tier_of(collector.path) == IN_PROCESS_TIER
    mp = _refuse_processes(f"importing {collector.nodeid}") if guarded else None
    try:
        yield
    finally:
        if mp is not None:
            mp.undo()


_TIER_SECONDS: dict[str, list] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Times each tier, and fails a test of the in-process tier that starts a process in its body or in any
    fixture it sets up, whatever the fixture's scope."""
    mp = None if item.get_closest_marker("process") is not None else _refuse_processes(item.nodeid)
    t0 = time.perf_counter()
    try:
        yield
    finally:
        if mp is not None:
            mp.undo()
    entry = _TIER_SECONDS.setdefault(tier_of(item.path), [0, 0.0])
    entry[0] += 1
    entry[1] += time.perf_counter() - t0


def pytest_terminal_summary(terminalreporter):
    if not _TIER_SECONDS:
        return
    terminalreporter.section("wall time per tier")
    for tier, (n, seconds) in sorted(_TIER_SECONDS.items(), key=lambda kv: -kv[1][1]):
        terminalreporter.write_line(f"tests/{tier:<12} {n:5d} tests {seconds / 60:7.1f} min")


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory):
    """A few steps of the tiny model on the built-in corpus with the bundled SentencePiece tokenizer:
    ``<dir>/ckpt`` (iteration 4) and the tokenized data in ``<dir>/data``."""
    tmp = tmp_path_factory.mktemp("textck")
    res = run([sys.executable, "-m", "tokenization.build_demo_data", "--out", str(tmp / "data")], timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    run_train(str(ROOT / "recipes/tiny/stable.yaml"), [
        "model.preset=tiny", "model.seq_length=64", f"data.mixture={tmp}/data/mixture.yaml",
        "train.tokens=2048", "train.global_batch_size=8", "train.micro_batch_size=4", "train.eval_interval=0",
        "schedule.warmup_tokens=0", f"checkpoint.save={tmp}/ckpt", "checkpoint.save_interval=0"])
    return tmp
