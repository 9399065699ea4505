"""Prints this package's runtime requirements (pyproject.toml [project].dependencies) for the container image,
without the ones the NGC PyTorch image provides or docker/Dockerfile installs without dependencies: torch (the
image's CUDA build; pyproject pins the CPU wheel) and megatron-core (installed --no-deps on top of that torch)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PROVIDED = {"torch", "megatron-core"}


def requirements(pyproject: Path) -> list[str]:
    try:
        deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"image_requirements: cannot read [project].dependencies from {pyproject}: {exc}")
    return [d for d in deps if Requirement(d).name not in PROVIDED]


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
