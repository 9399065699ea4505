"""Run an entry point (``megatron_octo.train`` or ``megatron_octo.rl``) and record what its optimizers
actually apply: at every ``torch.optim.Optimizer.step`` in the process, the ``lr`` and
``weight_decay`` of each param group of the torch optimizer that steps (the values Adam reads).

    OCTO_APPLIED_LR_OUT=/tmp/x python tests/scripts/applied_lr.py megatron_octo.train --config ... [a.b=c]

Writes ``<OCTO_APPLIED_LR_OUT>.rank<R>.jsonl``, one line per optimizer step:
``{"optimizer": "model"|"actor"|"critic", "lr": [...], "weight_decay": [...], "wd_mult": [...]}``.
Which torch optimizer is which is read from the trainer objects once their set-up has run. The
tests compare these records with the LR the run logged and with megatron-core's schedule.
"""

from __future__ import annotations

import json
import os
import runpy
import sys

from torch.optim.optimizer import register_optimizer_step_pre_hook

from megatron_octo.rl.trainer import RLTrainer
from megatron_octo.training.trainer import Trainer

_labels: dict[int, str] = {}
_out = None


def _torch_optimizers(megatron_optimizer) -> list:
    chained = getattr(megatron_optimizer, "chained_optimizers", None) or [megatron_optimizer]
    return [o.optimizer for o in chained if getattr(o, "optimizer", None) is not None]


def _label(megatron_optimizer, name: str) -> None:
    for opt in _torch_optimizers(megatron_optimizer):
        _labels[id(opt)] = name


def _record(optimizer, args, kwargs) -> None:
    global _out
    if _out is None:
        rank = os.environ.get("RANK", "0")
        _out = open(f"{os.environ['OCTO_APPLIED_LR_OUT']}.rank{rank}.jsonl", "a")
    groups = optimizer.param_groups
    _out.write(json.dumps({"optimizer": _labels.get(id(optimizer), "unknown"),
                           "lr": [g["lr"] for g in groups],
                           "weight_decay": [g["weight_decay"] for g in groups],
                           "wd_mult": [g.get("wd_mult", 1.0) for g in groups]}) + "\n")
    _out.flush()


def _wrap(cls, labels: dict) -> None:
    setup = cls.setup

    def labelled_setup(self):
        setup(self)
        for attr, name in labels.items():
            obj = self
            for part in attr.split("."):
                obj = getattr(obj, part, None) if obj is not None else None
            if obj is not None:
                _label(obj, name)

    cls.setup = labelled_setup


def main() -> None:
    module, argv = sys.argv[1], sys.argv[2:]
    _wrap(Trainer, {"optimizer": "model"})
    _wrap(RLTrainer, {"optimizer": "actor", "critic.optimizer": "critic"})
    register_optimizer_step_pre_hook(_record)
    sys.argv = [module, *argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
