"""The learning rate the optimizer applies, step by step, through the command-line tools' ``main``.

Every run is the CLI's ``main(argv)`` in the test's interpreter (tests/megatron_state.run_cli_in_process:
a fresh process is not the subject here) under a recorder of what the optimizers apply: at every
``torch.optim.Optimizer.step``, the ``lr`` of each param group of the torch optimizer that steps (the
value Adam uses). Each test compares those values with the LR the run logged (metrics.jsonl, to 1e-12)
and, where one applies, with megatron-core's own single-run WSD schedule (Megatron-LM's functional tests
compare step by step too).
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest
from megatron.core.optimizer_param_scheduler import OptimizerParamScheduler
from torch.optim.optimizer import register_optimizer_step_pre_hook

from megatron_octo.checkpoint.save_load import read_trainer_state, latest_checkpoint
from megatron_octo.rl.trainer import RLTrainer
from megatron_octo.training.trainer import Trainer
from tests.helpers import ROOT, read_metrics, tiny_recipe, tiny_rl_overrides, write_indexed_dataset
from tests.megatron_state import cli_main, run_cli_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TPS = 8 * 32  # tokens per step of tiny_recipe
PEAK = 1e-3
# Which torch optimizers a trainer owns, read from its attributes once its set-up has run.
LABELS = ((Trainer, {"optimizer": "model"}), (RLTrainer, {"optimizer": "actor", "critic.optimizer": "critic"}))


@contextlib.contextmanager
def applied_steps():
    """Records, for the body, one ``{"optimizer": "model"|"actor"|"critic", "lr": [...]}`` per torch optimizer
    step: the param groups' values at the moment ``step()`` runs."""
    records, labels, setups = [], {}, []

    def labelled(setup, attrs):
        def run(self):
            setup(self)
            for attr, name in attrs.items():
                obj = self
                for part in attr.split("."):
                    obj = getattr(obj, part, None) if obj is not None else None
                if obj is None:
                    continue
                chained = getattr(obj, "chained_optimizers", None) or [obj]
                for o in chained:
                    if getattr(o, "optimizer", None) is not None:
                        labels[id(o.optimizer)] = name
        return run

    def record(optimizer, args, kwargs):
        records.append({"optimizer": labels.get(id(optimizer), "unknown"),
                        "lr": [g["lr"] for g in optimizer.param_groups]})

    for cls, attrs in LABELS:
        setups.append((cls, cls.setup))
        cls.setup = labelled(cls.setup, attrs)
    handle = register_optimizer_step_pre_hook(record)
    try:
        yield records
    finally:
        handle.remove()
        for cls, setup in setups:
            cls.setup = setup


def _observed(tmp: Path, name: str, recipe: str, overrides: list, module: str = "megatron_octo.train",
              expect_rc: int = 0, env_extra: dict | None = None):
    """Run the CLI under the recorder; (result, applied records)."""
    with applied_steps() as records:
        res = run_cli_in_process(cli_main(module), ["--config", recipe, *overrides], env=env_extra)
    assert res.returncode == expect_rc, f"exit {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-4000:]}"
    return res, records


def _applied(records: list, optimizer: str = "model") -> list[float]:
    """Per optimizer step, the LR of the decayed param groups, which must all be the same."""
    out = []
    for r in records:
        if r["optimizer"] != optimizer:
            continue
        lrs = set(r["lr"])
        assert len(lrs) == 1, r  # every group on the one schedule
        out.append(r["lr"][0])
    return out


def _logged(save_dir: Path, key: str = "learning-rate") -> list[float]:
    return [r[key] for r in read_metrics(save_dir / "tensorboard") if key in r]


def _wsd(total, decay, peak, floor, style, warmup=0, steps=None, start=0) -> list[float]:
    """megatron-core's single-run WSD schedule over ``total`` tokens, the LR of each step."""
    class Groups:
        param_groups = [{}]

    s = OptimizerParamScheduler(Groups(), init_lr=0.0, max_lr=peak, min_lr=floor, lr_warmup_steps=warmup,
                                lr_decay_steps=total, lr_decay_style="WSD", start_wd=0.1, end_wd=0.1,
                                wd_incr_steps=1, wd_incr_style="constant", wsd_decay_steps=decay,
                                lr_wsd_decay_style=style)
    out = []
    for _ in range(steps if steps is not None else total // TPS):
        out.append(s.get_lr({}))
        s.step(TPS)
    return out[start:]


def _close(a: list, b: list, tol: float = 1e-12):
    assert len(a) == len(b), (a, b)
    for i, (x, y) in enumerate(zip(a, b)):
        assert abs(x - y) <= tol, (i, a, b)


@pytest.fixture(scope="module")
def stable(tmp_path_factory):
    """A stable run of 4 steps with a 2-step warmup and floor 1e-4 (irrelevant to a constant LR)."""
    tmp = tmp_path_factory.mktemp("applied_lr")
    recipe = tiny_recipe(tmp, write_indexed_dataset(str(tmp / "synthetic")))
    save = tmp / "stable"
    _, rec = _observed(tmp, "stable", recipe, [f"train.tokens={4 * TPS}", f"schedule.warmup_tokens={2 * TPS}",
                                               "schedule.min_lr=1e-4", f"checkpoint.save={save}"])
    return {"tmp": tmp, "recipe": recipe, "save": save, "applied": _applied(rec)}


def test_stable_run_applies_the_logged_warmup_and_constant_lr(stable):
    applied = stable["applied"]
    _close(applied, _logged(stable["save"]))
    _close(applied, _wsd(8 * TPS, 4 * TPS, PEAK, 1e-4, "cosine", warmup=2 * TPS, steps=4))
    assert applied == pytest.approx([0.0, PEAK / 2, PEAK, PEAK], abs=1e-15)


def _decay(stable, name, overrides, **kw):
    save = stable["tmp"] / name
    res, rec = _observed(stable["tmp"], name, stable["recipe"], [
        "schedule.stage=decay", f"train.tokens={4 * TPS}", f"checkpoint.save={save}", *overrides], **kw)
    return res, save, _applied(rec)


@pytest.fixture(scope="module")
def decay_floor(stable):
    """A decay branch whose floor (7e-4) differs from the stable run's (1e-4)."""
    res, save, applied = _decay(stable, "decay_floor", [f"checkpoint.init_from={stable['save']}",
                                                        "schedule.min_lr=7e-4", "schedule.decay_style=cosine"])
    return res, save, applied


def test_decay_branch_applies_its_own_floor(stable, decay_floor):
    res, save, applied = decay_floor
    _close(applied, _logged(save))
    # Stable + decay = megatron's single-run WSD over 8 steps with the branch's floor.
    _close(stable["applied"] + applied, _wsd(8 * TPS, 4 * TPS, PEAK, 7e-4, "cosine", warmup=2 * TPS))
    assert min(applied) > 7e-4  # never below the branch's floor (the stable's would reach 1e-4)
    state = read_trainer_state(latest_checkpoint(str(save)))
    assert state.schedule["min_lr"] == 7e-4 and state.schedule["lr"] == pytest.approx(7e-4, abs=1e-15)
    assert "decay from 0.001 (the last LR of" in res.stdout and "schedule.min_lr=0.0007" in res.stdout


def test_decay_from_a_stable_stopped_in_warmup_starts_at_its_last_lr(stable):
    """The stable run's last LR (2.5e-4, a quarter through its warmup) differs from its peak (1e-3)."""
    tmp, recipe = stable["tmp"], stable["recipe"]
    early = tmp / "stable_early"
    _observed(tmp, "stable_early", recipe, [f"train.tokens={2 * TPS}", f"schedule.warmup_tokens={8 * TPS}",
                                            f"checkpoint.save={early}"])
    start = PEAK * 2 / 8
    assert read_trainer_state(latest_checkpoint(str(early))).schedule["lr"] == pytest.approx(start, abs=1e-15)
    _, save, applied = _decay(stable, "decay_from_early", [f"checkpoint.init_from={early}", "schedule.min_lr=1e-5",
                                                           "schedule.decay_style=linear"])
    _close(applied, _logged(save))
    _close(applied, _wsd(6 * TPS, 4 * TPS, start, 1e-5, "linear", steps=6, start=2))
    assert applied[0] == pytest.approx(start, abs=1e-15)


def test_decay_with_schedule_start_lr(stable):
    _, save, applied = _decay(stable, "decay_start", [f"checkpoint.init_from={stable['save']}", "schedule.start_lr=5e-4",
                                                      "schedule.min_lr=0", "schedule.decay_style=linear"])
    _close(applied, _logged(save))
    _close(applied, _wsd(8 * TPS, 4 * TPS, 5e-4, 0.0, "linear", start=4))
    assert applied[0] == 5e-4


def test_resumed_stable_run_applies_the_same_lrs(stable):
    tmp, recipe = stable["tmp"], stable["recipe"]
    save = tmp / "stable_split"
    common = [f"schedule.warmup_tokens={2 * TPS}", "schedule.min_lr=1e-4", f"checkpoint.save={save}"]
    _, first = _observed(tmp, "split_a", recipe, [f"train.tokens={TPS}", *common])
    res, second = _observed(tmp, "split_b", recipe, [f"train.tokens={4 * TPS}", *common])
    assert "resumed from" in res.stdout
    _close(_applied(first) + _applied(second), stable["applied"])
    _close(_applied(first) + _applied(second), _logged(save))


def test_resumed_decay_run_and_a_changed_value_on_resume(stable, decay_floor):
    _, _, uninterrupted = decay_floor
    tmp = stable["tmp"]
    branch = [f"checkpoint.init_from={stable['save']}", "schedule.min_lr=7e-4", "schedule.decay_style=cosine"]
    # Stopped by SIGUSR1 after global iteration 6 (its 2nd step): saved, exit 75.
    _, save, first = _decay(stable, "decay_split", branch, expect_rc=75,
                            env_extra={"OCTO_FAULT_INJECT": "step:6=sigusr1"})
    assert len(first) == 2
    saved = tmp / "decay_split_saved"
    shutil.copytree(save, saved)
    _, _, second = _decay(stable, "decay_split", branch)
    _close(first + second, uninterrupted)
    _close(first + second, _logged(save))

    # The same resume with another floor: refused by default, naming the key; nothing written.
    save2 = tmp / "decay_changed"
    shutil.copytree(saved, save2)
    changed = [f"checkpoint.init_from={stable['save']}", "schedule.min_lr=5e-4", "schedule.decay_style=cosine",
               f"train.tokens={4 * TPS}", "schedule.stage=decay", f"checkpoint.save={save2}"]
    res, rec = _observed(tmp, "decay_changed_refused", stable["recipe"], changed, expect_rc=2)
    assert "schedule.min_lr" in res.stderr and "schedule_on_resume" in res.stderr and _applied(rec) == []
    assert latest_checkpoint(str(save2)).endswith("iter_0000006")
    # Applied with checkpoint.schedule_on_resume=config: from the resume point, with a line saying so.
    res, rec = _observed(tmp, "decay_changed_applied", stable["recipe"],
                         [*changed, "checkpoint.schedule_on_resume=config"])
    assert "schedule.min_lr: 0.0007" in res.stdout and "-> 0.0005 from the config, applied" in res.stdout
    applied = _applied(rec)
    _close(applied, _wsd(8 * TPS, 4 * TPS, PEAK, 5e-4, "cosine", warmup=2 * TPS, start=6))
    _close(first + applied, _logged(save2))
    # Kept with =checkpoint: the checkpoint's floor, with a line saying the config's is not applied.
    save3 = tmp / "decay_kept"
    shutil.copytree(saved, save3)
    res, rec = _observed(tmp, "decay_changed_kept", stable["recipe"],
                         [*changed[:-1], f"checkpoint.save={save3}", "checkpoint.schedule_on_resume=checkpoint"])
    assert "schedule.min_lr=0.0005 in the config is not applied" in res.stdout
    _close(_applied(rec), second)


@pytest.mark.parametrize("algorithm", ["grpo", "ppo"])
def test_rl_run_and_resume_apply_the_logged_lrs(tiny_text_checkpoint, tmp_path, algorithm):
    """Actor (and PPO's critic) at rl.lr / rl.critic_lr, read back each step; a resume with a changed
    rl.lr is refused, then applied with checkpoint.schedule_on_resume=config."""
    recipe = str(ROOT / f"recipes/tiny/rl_{algorithm}.yaml")
    save = tmp_path / "rl"
    common = [*tiny_rl_overrides(tiny_text_checkpoint / "ckpt"), "rl.lr=3e-4", f"checkpoint.save={save}",
              "rl.critic_lr=2e-3", "rl.critic_warmup_steps=0"]
    _, rec = _observed(tmp_path, "rl_a", recipe, [*common, "rl.steps=1"], module="megatron_octo.rl")
    actor = _applied(rec, "actor")
    assert len(actor) == 2 and set(actor) == {3e-4}  # 2 mini-batches: two optimizer steps
    logged = _logged(save, "actor/lr")
    assert logged == [3e-4]
    if algorithm == "ppo":
        assert set(_applied(rec, "critic")) == {2e-3} and _logged(save, "critic/lr") == [2e-3]
    res, rec = _observed(tmp_path, "rl_refused", recipe, [*common, "rl.steps=2", "rl.lr=1e-4"],
                         module="megatron_octo.rl", expect_rc=2)
    assert "config key 'rl.lr'" in res.stderr and _applied(rec, "actor") == []
    res, rec = _observed(tmp_path, "rl_b", recipe, [*common, "rl.steps=2", "rl.lr=1e-4",
                                                    "checkpoint.schedule_on_resume=config"], module="megatron_octo.rl")
    assert "resumed from" in res.stdout and "rl.lr: 0.0003" in res.stdout
    assert set(_applied(rec, "actor")) == {1e-4} and _logged(save, "actor/lr") == [3e-4, 1e-4]
    if algorithm == "ppo":
        assert set(_applied(rec, "critic")) == {2e-3} and _logged(save, "critic/lr") == [2e-3, 2e-3]
    assert read_trainer_state(latest_checkpoint(str(save))).schedule["lr"] == 1e-4
