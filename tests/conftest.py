"""Test tiers and session fixtures shared by end-to-end tests.

Tiers: a test's folder is its tier. ``tests/unit`` is the in-process tier (``make test-fast``): its
tests may not start a process, and the guard below fails any that tries. Every other folder's tests
are marked ``process`` (they start interpreters, torchrun or the real CLIs) plus their folder's own
marker, so ``-m "not process"`` selects exactly the in-process tier.

``make test`` runs on pytest-xdist workers (``-n 2``, TierScheduling): a module is one unit of work (its
module fixtures are built once), the Slurm modules one unit together (they start and stop the one
cluster), the slowest tiers first so the in-process tier's many small modules fill the end. Session
fixtures that train something are built once per run whatever the worker count (``shared_dir``).
"""

from __future__ import annotations

import json
import multiprocessing.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

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


# The order tiers run in: the longest units first, so that two workers end together.
TIER_ORDER = ("slurm", "e2e", "reliability", "distributed", "gpu_sim", "process", "unit")
SHARED_UNITS = ("slurm",)  # tiers whose modules are one unit of work together


def unit_of_work(nodeid: str) -> str:
    """The xdist unit of work a test belongs to: its module, or its tier for SHARED_UNITS."""
    path = nodeid.split("::", 1)[0]
    parts = path.split("/")
    return "/".join(parts[:2]) if len(parts) > 2 and parts[1] in SHARED_UNITS else path


try:
    from xdist.scheduler import LoadScopeScheduling
except ImportError:  # without pytest-xdist `make test` cannot run; `pytest tests` still can, serially
    pass
else:
    class TierScheduling(LoadScopeScheduling):
        """xdist's load-by-scope scheduling with unit_of_work as the scope (a module, or all the Slurm tests)."""

        def _split_scope(self, nodeid: str) -> str:
            return unit_of_work(nodeid)

    def pytest_xdist_make_scheduler(config, log):
        return TierScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = tier_of(item.path)
        if tier != IN_PROCESS_TIER:
            item.add_marker("process")
        for name in TIER_MARKERS[tier]:
            item.add_marker(name)
    rank = {tier: i for i, tier in enumerate(TIER_ORDER)}
    items.sort(key=lambda item: rank[tier_of(item.path)])  # stable: module and test order kept within a tier


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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Fails a test of the in-process tier that starts a process in its body or in any
    fixture it sets up, whatever the fixture's scope."""
    mp = None if item.get_closest_marker("process") is not None else _refuse_processes(item.nodeid)
    try:
        yield
    finally:
        if mp is not None:
            mp.undo()


_TIER_SPANS: dict[str, list] = {}  # tier -> [(start, stop)] of every test phase, wherever it ran


def pytest_runtest_logreport(report):
    """Collects each test phase's time span by tier: reports reach the controller from every xdist worker."""
    tier = report.nodeid.split("/", 2)[1] if report.nodeid.startswith("tests/") else "?"
    spans = _TIER_SPANS.setdefault(tier, [set(), []])
    spans[0].add(report.nodeid)
    if getattr(report, "start", None) is not None:
        spans[1].append((report.start, report.stop))


def union_seconds(spans: list) -> float:
    """The wall time covered by possibly overlapping (start, stop) spans (tests of one tier on two workers)."""
    total, end = 0.0, float("-inf")
    for start, stop in sorted(spans):
        if stop > end:
            total += stop - max(start, end)
            end = stop
    return total


def pytest_terminal_summary(terminalreporter):
    if not _TIER_SPANS:
        return
    workers = terminalreporter.config.getoption("numprocesses", None)
    terminalreporter.section("wall time per tier" + (f" ({workers} workers: tiers overlap)" if workers else ""))
    rows = {tier: (len(ids), union_seconds(spans)) for tier, (ids, spans) in _TIER_SPANS.items()}
    for tier, (n, seconds) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        terminalreporter.write_line(f"tests/{tier:<12} {n:5d} tests {seconds / 60:7.1f} min")


def shared_dir(tmp_path_factory, name: str, build) -> Path:
    """``build(dir)`` once per test run, whatever the number of xdist workers: the first worker to ask
    builds it under a file lock in the run's common temporary directory, the others wait and reuse it.
    Only for outputs the tests read (a test that writes copies first)."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out, done = root / f"shared-{name}", root / f"shared-{name}.done"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not done.exists():
            if out.exists():  # a build that failed on another worker: start over
                shutil.rmtree(out)
            out.mkdir()
            build(out)
            done.write_text(json.dumps({"worker": os.environ.get("PYTEST_XDIST_WORKER", "master")}))
    return out


@pytest.fixture(scope="session")
def tiny_text_checkpoint(tmp_path_factory):
    """A few steps of the tiny model on the built-in corpus with the bundled SentencePiece tokenizer:
    ``<dir>/ckpt`` (iteration 4) and the tokenized data in ``<dir>/data``."""
    def build(tmp):
        res = run([sys.executable, "-m", "tokenization.build_demo_data", "--out", str(tmp / "data")], timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        run_train(str(ROOT / "recipes/tiny/stable.yaml"), [
            "model.preset=tiny", "model.seq_length=64", f"data.mixture={tmp}/data/mixture.yaml",
            "train.tokens=2048", "train.global_batch_size=8", "train.micro_batch_size=4", "train.eval_interval=0",
            "schedule.warmup_tokens=0", f"checkpoint.save={tmp}/ckpt", "checkpoint.save_interval=0"])
    return shared_dir(tmp_path_factory, "textck", build)


@pytest.fixture(scope="session")
def hf_imported(tmp_path_factory) -> dict:
    """The HF-imported family: a tiny random Llama saved by transformers in 150 KB shards (``hf``: GQA, tied
    embeddings, llama3 RoPE scaling, a 300-token vocabulary that needs padding) and its imports by
    tools/convert_from_hf.py at TP=1 (``tp1``: vocabulary padded to 384) and TP=2 (``tp2``: to 512), with the
    tool's output (``stdout_tp1``, ``stdout_tp2``). Read only."""
    from tests.hf_cases import from_hf, make_hf_model

    def build(d):
        hf = make_hf_model(d / "hf", max_shard_size="150KB")
        for tp in (1, 2):
            res = from_hf(hf, "--out", d / f"mg_tp{tp}", *(["--tp", "2"] if tp == 2 else []))
            (d / f"mg_tp{tp}.stdout").write_text(res.stdout)

    d = shared_dir(tmp_path_factory, "hf", build)
    return {"hf": d / "hf", "tp1": d / "mg_tp1", "tp2": d / "mg_tp2",
            "stdout_tp1": (d / "mg_tp1.stdout").read_text(), "stdout_tp2": (d / "mg_tp2.stdout").read_text()}


def rl_family_run(tmp_path_factory, algorithm: str, overrides: list) -> dict:
    """``python -m megatron_octo.rl`` with recipes/tiny/rl_<algorithm>.yaml and ``overrides``, once per test run,
    a checkpoint after each step: ``save`` (the run's directory) and ``stdout``."""
    def build(d):
        res = run_train(str(ROOT / f"recipes/tiny/rl_{algorithm}.yaml"), [
            *overrides, "rl.save_interval=1", f"checkpoint.save={d / 'run'}"], timeout=400, module="megatron_octo.rl")
        (d / "stdout.txt").write_text(res.stdout)

    d = shared_dir(tmp_path_factory, algorithm, build)
    return {"save": d / "run", "stdout": (d / "stdout.txt").read_text()}


def grpo_overrides(init_from) -> list[str]:
    """The GRPO family's run (recipes/tiny/rl_grpo.yaml): 2 steps of 4 prompts x 4 samples of <= 24 tokens from
    ``init_from``, two mini-batches, and a dense test reward (the share of digits) so that an untrained model's
    samples score differently within a group and the update is real."""
    return ["model.preset=tiny", f"checkpoint.init_from={init_from}",
            f"rl.reward_fn={ROOT}/tests/scripts/rl_test_reward.py:digit_share",
            "rl.steps=2", "rl.val_interval=0", "rl.max_response_length={0: 24}", "rl.lr=1e-3",
            "rl.prompts_per_step=4", "rl.samples_per_prompt=4", "rl.mini_batch_prompts=2"]


@pytest.fixture(scope="session")
def grpo_run(tiny_text_checkpoint, tmp_path_factory) -> dict:
    """The GRPO family: ``python -m megatron_octo.rl`` with ``grpo_overrides`` from the pretraining family's
    checkpoint, a checkpoint after each step (``save``), its output (``stdout``). Read only."""
    return rl_family_run(tmp_path_factory, "grpo", grpo_overrides(tiny_text_checkpoint / "ckpt"))


def ppo_overrides(init_from) -> list[str]:
    """The PPO family's run (recipes/tiny/rl_ppo.yaml): 3 steps of the tiny RL set-up (helpers.tiny_rl_overrides)
    from ``init_from``, with a critic lr that visibly moves the critic."""
    from tests.helpers import tiny_rl_overrides

    return [*tiny_rl_overrides(init_from), "rl.critic_lr=1e-3", "rl.steps=3"]


@pytest.fixture(scope="session")
def ppo_run(tiny_text_checkpoint, tmp_path_factory) -> dict:
    """The PPO family: ``python -m megatron_octo.rl`` (PPO) with ``ppo_overrides`` from the pretraining family's
    checkpoint, a checkpoint after each step (``save``), its output (``stdout``). Read only."""
    return rl_family_run(tmp_path_factory, "ppo", ppo_overrides(tiny_text_checkpoint / "ckpt"))
