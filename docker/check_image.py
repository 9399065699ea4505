"""Checks, at `docker build` time, that the image's GPU stack suits megatron-core 0.16.1; exit 1 naming the
package otherwise. Run as the last build step of docker/Dockerfile (and by hand: `python docker/check_image.py`).

- Transformer Engine: within the range megatron-core's own metadata requires (its `dev` extra), read from the
  installed megatron-core, not copied here.
- apex: importable (megatron's optimizer falls back to apex's FusedAdam without TE's).
- flash-attn: flash-attn 3, or flash-attn >= 2.7.3 (megatron's dynamic inference engine, rl.rollout_engine=dynamic).
- megatron-core 0.16.1 and megatron_octo importable.
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import sys

from packaging.requirements import Requirement
from packaging.version import Version

MEGATRON_CORE = "0.16.1"
FLASH_ATTN_MIN = "2.7.3"


def _version(*dists: str) -> str | None:
    for dist in dists:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def te_requirement() -> Requirement:
    """megatron-core's own transformer-engine requirement (Requires-Dist of its dev extra)."""
    for line in md.requires("megatron-core") or []:
        req = Requirement(line)
        if req.name == "transformer-engine":
            return req
    raise LookupError("megatron-core's metadata names no transformer-engine requirement")


def problems() -> list[str]:
    found: list[str] = []
    mcore = _version("megatron-core")
    if mcore != MEGATRON_CORE:
        return [f"megatron-core: {mcore or 'not installed'}, need {MEGATRON_CORE}"]
    req = te_requirement()
    te = _version("transformer_engine", "transformer-engine", "transformer_engine_torch")
    if te is None:
        found.append(f"transformer_engine: not installed, megatron-core {MEGATRON_CORE} wants {req.specifier}")
    elif not req.specifier.contains(Version(te), prereleases=True):
        found.append(f"transformer_engine: {te} is outside megatron-core {MEGATRON_CORE}'s {req.specifier}")
    for module in ("transformer_engine.pytorch", "apex", "megatron.core", "megatron_octo"):
        try:
            importlib.import_module(module)
        except Exception as exc:  # an ImportError, or a CUDA library that fails to load
            found.append(f"{module}: cannot import ({type(exc).__name__}: {exc})")
    fa3 = _version("flash_attn_3", "flashattn-hopper")
    fa2 = _version("flash_attn", "flash-attn")
    if fa3 is None and (fa2 is None or Version(fa2) < Version(FLASH_ATTN_MIN)):
        found.append(f"flash_attn: {fa2 or 'not installed'}, the dynamic inference engine needs flash-attn 3 "
                     f"or flash-attn >= {FLASH_ATTN_MIN}")
    return found


def main() -> int:
    found = problems()
    for line in found:
        print(f"check_image: {line}", file=sys.stderr)
    if found:
        return 1
    print("check_image: ok | " + " | ".join(
        f"{name} {_version(*dists)}" for name, dists in (
            ("torch", ("torch",)), ("megatron-core", ("megatron-core",)),
            ("transformer_engine", ("transformer_engine", "transformer-engine")), ("apex", ("apex",)),
            ("flash_attn", ("flash_attn", "flash-attn")), ("flash_attn_3", ("flash_attn_3",)))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
