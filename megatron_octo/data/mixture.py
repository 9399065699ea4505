"""Data mixtures: which tokenized sources each training stage reads, and with what weight.

Mixture YAML::

    stages:
      stable:
        - {name: web, prefix: tok/math_web, weight: 1.0}
      decay_long:
        - {name: web, prefix: tok/math_web, weight: 0.7}
        - {name: qa_long, prefix: tok/qa_long, weight: 0.3}

* ``stages`` is the only top-level key. Stage names are identifiers; the recipe stages are
  ``stable``, ``decay_long``, ``decay_short`` and ``decay_hybrid`` (:data:`KNOWN_STAGES`), other
  names (ablations such as ``decay_qa20``) are allowed.
* each source has exactly ``name`` (unique within its stage), ``prefix`` (an IndexedDataset path
  prefix, without ``.bin``/``.idx``; relative prefixes resolve against the directory of the mixture
  file; ``~`` and ``$VARS`` are expanded) and ``weight`` (a positive number; weights need not sum to
  one — megatron normalises them, and :func:`normalized_weights` gives the shares).
* ``load_mixture(path, stage)`` returns the stage's sources; with ``check_files`` both
  ``<prefix>.bin`` and ``<prefix>.idx`` must exist.

Every problem raises :class:`MixtureError` (a ``ValueError``) whose message names the file, the
stage / source / key and what is wrong.

``to_megatron_blend(sources)`` gives megatron-core's ``BlendedMegatronDatasetConfig.blend`` form,
``([prefix, ...], [weight, ...])``. Megatron blends at the sample level; samples have equal length,
so a source's weight share is also its share of the training tokens.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

import yaml

from megatron_octo.config import fail

__all__ = [
    "KNOWN_STAGES", "MixtureError", "Source", "load_mixture", "load_mixture_file",
    "normalized_weights", "to_megatron_blend",
]

KNOWN_STAGES = ("stable", "decay_long", "decay_short", "decay_hybrid")
SOURCE_KEYS = ("name", "prefix", "weight")
_STAGE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class MixtureError(ValueError):
    """An invalid mixture file or stage; the message names file, stage/key and the problem."""


@dataclass
class Source:
    name: str
    prefix: str
    weight: float


def _err(path: str, where: str, what: str) -> MixtureError:
    return MixtureError(f"{path}: {where}: {what}")


def _parse_source(path: str, base: str, stage: str, i: int, item: Any) -> Source:
    where = f"stages.{stage}[{i}]"
    if not isinstance(item, dict):
        raise _err(path, where, f"expected a mapping with keys {list(SOURCE_KEYS)}, got "
                                f"{type(item).__name__}")
    unknown = sorted(set(map(str, item)) - set(SOURCE_KEYS))
    if unknown:
        raise _err(path, where, f"unknown key(s) {unknown}; allowed: {list(SOURCE_KEYS)}")
    missing = [k for k in SOURCE_KEYS if k not in item]
    if missing:
        raise _err(path, where, f"missing key(s) {missing}")
    name, prefix, weight = item["name"], item["prefix"], item["weight"]
    if not isinstance(name, str) or not name.strip():
        raise _err(path, f"{where}.name", "must be a non-empty string")
    where = f"stages.{stage}[{i}] ({name})"
    if not isinstance(prefix, str) or not prefix.strip():
        raise _err(path, f"{where}.prefix", "must be a non-empty string")
    if prefix.endswith((".bin", ".idx")):
        raise _err(path, f"{where}.prefix",
                   f"{prefix!r} is a file name; give the prefix without .bin/.idx")
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise _err(path, f"{where}.weight", f"must be a number, got {weight!r}")
    weight = float(weight)
    if not math.isfinite(weight) or weight <= 0:
        raise _err(path, f"{where}.weight", f"must be positive and finite, got {weight}")
    expanded = os.path.expandvars(os.path.expanduser(prefix))
    resolved = expanded if os.path.isabs(expanded) else os.path.normpath(os.path.join(base, expanded))
    return Source(name=name, prefix=resolved, weight=weight)


def load_mixture_file(path: str, check_files: bool = True) -> dict[str, list[Source]]:
    """All stages of a mixture file, validated."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise MixtureError(f"{path}: mixture file not found") from None
    except yaml.YAMLError as e:
        raise MixtureError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(doc, dict):
        raise _err(path, "top level", "expected a mapping with the key 'stages'")
    unknown = sorted(set(map(str, doc)) - {"stages"})
    if unknown:
        raise _err(path, "top level", f"unknown key(s) {unknown}; allowed: ['stages']")
    stages = doc.get("stages")
    if not isinstance(stages, dict) or not stages:
        raise _err(path, "stages", "expected a non-empty mapping of stage name -> list of sources")
    base = os.path.dirname(os.path.abspath(path))
    out: dict[str, list[Source]] = {}
    for stage, items in stages.items():
        if not isinstance(stage, str) or not _STAGE_RE.match(stage):
            raise _err(path, f"stages.{stage}", "stage names must be identifiers")
        if not isinstance(items, list) or not items:
            raise _err(path, f"stages.{stage}", "empty stage: list at least one source")
        sources = [_parse_source(path, base, stage, i, it) for i, it in enumerate(items)]
        seen = set()
        for s in sources:
            if s.name in seen:
                raise _err(path, f"stages.{stage}", f"source name {s.name!r} appears twice")
            seen.add(s.name)
        if check_files:
            for s in sources:
                for suffix in (".bin", ".idx"):
                    if not os.path.isfile(s.prefix + suffix):
                        raise _err(path, f"stages.{stage} ({s.name}).prefix",
                                   f"missing {s.prefix + suffix} (tokenize it with "
                                   f"python -m tokenization.preprocess)")
        out[stage] = sources
    return out


def load_mixture(path: str, stage: str, check_files: bool = True) -> list[Source]:
    """The sources of one stage (see the module docstring for the format and the checks)."""
    stages = load_mixture_file(path, check_files=False)
    if stage not in stages:
        raise _err(path, f"stage {stage!r}",
                   f"unknown stage; the file defines: {', '.join(stages)}")
    sources = stages[stage]
    if check_files:
        for s in sources:
            for suffix in (".bin", ".idx"):
                if not os.path.isfile(s.prefix + suffix):
                    raise _err(path, f"stages.{stage} ({s.name}).prefix",
                               f"missing {s.prefix + suffix} (tokenize it with "
                               f"python -m tokenization.preprocess)")
    return sources


def normalized_weights(sources: list[Source]) -> list[float]:
    total = sum(s.weight for s in sources)
    return [s.weight / total for s in sources]


def to_megatron_blend(sources: list[Source]) -> tuple[list[str], list[float]]:
    """``(prefixes, weights)``: the ``blend`` argument of ``BlendedMegatronDatasetConfig``."""
    if not sources:
        raise MixtureError("to_megatron_blend: no sources")
    return [s.prefix for s in sources], [float(s.weight) for s in sources]


def check_data(cfg) -> None:
    """``data.*`` of a training config: a blend or a mixture whose files exist, and the split.
    Raises ConfigError naming the key."""
    d = cfg.data
    if d.mock:
        return
    if d.mixture is None and len(d.blend) == 0:
        fail("data.blend", "no training data: set data.blend (list of {prefix, weight}) or "
              "data.mixture + data.stage (or data.mock=true for random tokens)")
    if d.mixture is not None and len(d.blend) > 0:
        fail("data.mixture", "set either data.mixture or data.blend, not both")
    if d.mixture is not None:
        if d.stage is None:
            fail("data.stage", f"data.mixture={d.mixture} needs data.stage (e.g. stable, decay_long)")
        if not os.path.isfile(d.mixture):
            fail("data.mixture", f"mixture file not found: {d.mixture}")
        try:
            load_mixture(d.mixture, d.stage, check_files=True)
        except MixtureError as exc:
            fail("data.mixture", str(exc))
    for i, src in enumerate(d.blend):
        if not (src.weight > 0):
            fail(f"data.blend[{i}].weight", f"must be > 0, got {src.weight}")
        for ext in (".bin", ".idx"):
            if not os.path.isfile(src.prefix + ext):
                fail(f"data.blend[{i}].prefix", f"dataset file not found: {src.prefix}{ext}")
    try:
        parts = [float(x) for x in d.split.replace("/", ",").split(",")]
    except ValueError:
        fail("data.split", f"{d.split!r} is not comma-separated numbers like '98,2,0'")
    if len(parts) != 3 or any(p < 0 for p in parts) or parts[0] <= 0:
        fail("data.split", f"{d.split!r} needs three non-negative weights with train > 0")
    if cfg.train.eval_interval > 0 and parts[1] <= 0:
        fail("data.split", "train.eval_interval > 0 needs a validation share in data.split")
