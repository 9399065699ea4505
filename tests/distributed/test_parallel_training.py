"""Parallel claims, each against the single-process result (torchrun, 2 gloo processes)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler

from tests.helpers import read_metrics, read_scalars, run_train, tiny_recipe, write_indexed_dataset

pytestmark = [pytest.mark.distributed, pytest.mark.timeout(900)]

STEPS = 3
TOKENS = STEPS * 8 * 32


def _losses(logdir) -> list[float]:
    return [v for _, v in read_scalars(str(logdir))["lm loss"]]


def _assert_close(a, b, rel=1e-5):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert abs(x - y) <= rel * max(abs(x), abs(y)), (a, b)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A dataset, an initial checkpoint (iteration 0) and the single-process reference losses."""
    tmp = tmp_path_factory.mktemp("par")
    prefix = write_indexed_dataset(str(tmp / "synthetic"))
    recipe = tiny_recipe(tmp, prefix)
    run_train(recipe, ["train.tokens=0", f"checkpoint.save={tmp / 'init'}"], in_process=True)
    ref = tmp / "ref"
    run_train(recipe, [f"train.tokens={TOKENS}", f"checkpoint.save={ref}",
                       f"checkpoint.init_from={tmp / 'init'}", "checkpoint.init_weights_only=true"], in_process=True)
    return {"tmp": tmp, "recipe": recipe, "ref": _losses(ref / "tensorboard")}


@pytest.mark.parametrize("layout", [
    ["parallel.tp=2"],
    ["parallel.pp=2"],
    ["parallel.use_distributed_optimizer=true"],  # DP=2
], ids=["tp2", "pp2", "dp2-distopt"])
def test_layout_reproduces_single_process_losses(world, layout):
    out = world["tmp"] / ("run_" + "_".join(x.replace("=", "") for x in layout))
    run_train(world["recipe"], [*layout, f"train.tokens={TOKENS}", f"checkpoint.save={out}",
                                f"checkpoint.init_from={world['tmp'] / 'init'}",
                                "checkpoint.init_weights_only=true"], nproc=2)
    losses = _losses(out / "tensorboard")
    assert len(losses) == STEPS
    _assert_close(losses, world["ref"])
    # The losses moved: a run that did not train would pass the equality trivially.
    assert losses[-1] < losses[0]


def test_resume_equals_uninterrupted_run(world):
    tmp, recipe = world["tmp"], world["recipe"]
    init = [f"checkpoint.init_from={tmp / 'init'}", "checkpoint.init_weights_only=true"]
    full = tmp / "full6"
    run_train(recipe, [f"train.tokens={2 * TOKENS}", f"checkpoint.save={full}", *init], in_process=True)
    split = tmp / "split6"
    run_train(recipe, [f"train.tokens={TOKENS}", f"checkpoint.save={split}", *init], in_process=True)
    # A new process continues the same stage with a larger budget from the latest checkpoint.
    run_train(recipe, [f"train.tokens={2 * TOKENS}", f"checkpoint.save={split}", *init], in_process=True)
    a, b = _losses(full / "tensorboard"), _losses(split / "tensorboard")
    assert len(a) == 2 * STEPS and a == b
    state = (split / "iter_0000006" / "trainer_state.json").read_text()
    assert '"consumed_samples": 48' in state and '"tokens": 1536' in state


def test_saved_at_tp2_resumed_at_tp1(world):
    tmp, recipe = world["tmp"], world["recipe"]
    init = [f"checkpoint.init_from={tmp / 'init'}", "checkpoint.init_weights_only=true"]
    ref = tmp / "ref6"
    run_train(recipe, [f"train.tokens={2 * TOKENS}", f"checkpoint.save={ref}", *init], in_process=True)
    out = tmp / "tp2then1"
    run_train(recipe, ["parallel.tp=2", f"train.tokens={TOKENS}", f"checkpoint.save={out}", *init], nproc=2)
    run_train(recipe, ["parallel.tp=1", f"train.tokens={2 * TOKENS}", f"checkpoint.save={out}", *init], in_process=True)
    _assert_close(_losses(out / "tensorboard"), _losses(ref / "tensorboard"))


def _tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def test_two_decay_branches_from_one_stable_checkpoint(world):
    tmp, recipe = world["tmp"], world["recipe"]
    stable = tmp / "stable"
    run_train(recipe, [f"train.tokens={TOKENS}", f"checkpoint.save={stable}"], in_process=True)
    stable_ckpt = stable / "iter_0000003"
    before = _tree_digest(stable)
    results = {}
    # Long: cosine, one process, from the save directory (its latest checkpoint).
    # Short: linear, TP=2, from the iteration directory itself.
    for name, style, source, layout in (("long", "cosine", stable, []),
                                        ("short", "linear", stable_ckpt, ["parallel.tp=2"])):
        out = tmp / f"decay_{name}"
        run_train(recipe, ["schedule.stage=decay", f"schedule.decay_style={style}", "schedule.min_lr=1e-5",
                           f"train.tokens={TOKENS}", f"checkpoint.save={out}", f"checkpoint.init_from={source}",
                           *layout], nproc=2 if layout else 1, in_process=not layout)
        results[name] = read_scalars(str(out / "tensorboard"))
        assert (out / "iter_0000006" / "trainer_state.json").is_file()
    assert _tree_digest(stable) == before, "a decay branch modified the stable checkpoint"
    for name in results:
        lr = [v for _, v in results[name]["learning-rate"]]
        # Each branch starts at the stable LR and decays; its global iterations continue from 3.
        assert [s for s, _ in results[name]["learning-rate"]] == [4, 5, 6]
        assert lr[0] == pytest.approx(1e-3) and lr[1] < lr[0] and lr[2] < lr[1]
    assert results["long"]["learning-rate"][1][1] != pytest.approx(results["short"]["learning-rate"][1][1])
    # The trainers' own LRs, stable then decay, equal megatron-core's single-run WSD schedule.
    stable_lrs = [r["learning-rate"] for r in read_metrics(stable / "tensorboard") if "learning-rate" in r]
    for name, style in (("long", "cosine"), ("short", "linear")):
        ours = stable_lrs + [r["learning-rate"] for r in read_metrics(tmp / f"decay_{name}" / "tensorboard")
                             if "learning-rate" in r]

        class _Opt:
            param_groups = [{}]

        ref = OptimizerParamScheduler(_Opt(), init_lr=0.0, max_lr=1e-3, min_lr=1e-5, lr_warmup_steps=0,
                                      lr_decay_steps=2 * TOKENS, lr_decay_style="WSD", start_wd=0.1, end_wd=0.1,
                                      wd_incr_steps=1, wd_incr_style="constant", wsd_decay_steps=TOKENS,
                                      lr_wsd_decay_style=style)
        expected = []
        for _ in range(2 * STEPS):
            expected.append(ref.get_lr({}))
            ref.step(TOKENS // STEPS)
        assert len(ours) == len(expected)
        assert all(abs(a - b) <= 1e-12 for a, b in zip(ours, expected)), (ours, expected)
