"""OctoThinker's pinned grading environment, installed for the tests, and OctoThinker's grading run in it.

OctoThinker's ``eval/requirements.txt`` pins sympy 1.12 and antlr4-python3-runtime 4.11.1 (and leaves
math-verify unpinned). The project's venv has sympy 1.14 and ANTLR 4.13 (OmegaConf and math-verify need
it), so that environment cannot live in the venv: :func:`ensure_env` installs it with
``pip install --target`` into a cache directory, once, and :func:`run_reference` runs
tests/scripts/octothinker_reference.py in ``python -I -S`` with only that directory and the standard
library on sys.path.

Cache: ``$OCTO_OCTOTHINKER_ENV_CACHE`` or ``~/.cache/megatron-octo/octothinker-env``, one directory per
set of pins (math-verify and latex2sympy2_extended pinned to the venv's versions, so that only sympy and
ANTLR differ). An install that fails raises :class:`PinnedEnvError` with pip's output: the tests that need
the environment then fail, they are not skipped.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from tests.helpers import ROOT

REFERENCE_SCRIPT = ROOT / "tests" / "scripts" / "octothinker_reference.py"
PORT = ROOT / "megatron_octo" / "eval" / "octothinker_grader.py"
# A checkout of OctoThinker (its eval/ and rl/ folders) for the "upstream" mode; see docs/evaluation.md.
SRC_ENV = "OCTO_OCTOTHINKER_SRC"

# OctoThinker's eval/requirements.txt: sympy==1.12, antlr4-python3-runtime==4.11.1 (mpmath 1.3.0 with
# sympy 1.12, regex and numpy imported by their eval code).
OCTOTHINKER_PINS = {
    "sympy": "1.12",
    "mpmath": "1.3.0",
    "antlr4-python3-runtime": "4.11.1",
    "regex": "2024.11.6",
    "numpy": "1.26.4",
}


class PinnedEnvError(RuntimeError):
    """The pinned environment could not be installed or did not run."""


def pins() -> dict[str, str]:
    """Every package of the environment with its version: OctoThinker's pins, math-verify as in the venv."""
    out = dict(OCTOTHINKER_PINS)
    for dist in ("math-verify", "latex2sympy2_extended"):
        out[dist] = importlib.metadata.version(dist)
    return out


def cache_root() -> Path:
    return Path(os.environ.get("OCTO_OCTOTHINKER_ENV_CACHE")
                or Path.home() / ".cache" / "megatron-octo" / "octothinker-env")


def env_dir(pinned: Optional[dict[str, str]] = None) -> Path:
    pinned = pinned or pins()
    key = json.dumps({"python": sys.version_info[:2], "pins": pinned}, sort_keys=True)
    return cache_root() / hashlib.sha256(key.encode()).hexdigest()[:16]


def ensure_env(timeout: float = 900.0) -> Path:
    """The environment's directory, installed first if it is not cached (a stamp file marks a complete one)."""
    pinned = pins()
    target = env_dir(pinned)
    stamp = target / "octothinker-env.json"
    if stamp.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test process may be installing the same pins
        if stamp.is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-input",
               "--no-warn-conflicts", "--retries", "5", "--timeout", "60", "--target", str(tmp),
               *(f"{name}=={version}" for name, version in pinned.items())]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PinnedEnvError(f"installing OctoThinker's pinned environment took over {timeout:.0f} s: "
                                 f"{' '.join(cmd)}") from exc
        if res.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise PinnedEnvError(f"could not install OctoThinker's pinned environment (exit {res.returncode}): "
                                 f"{' '.join(cmd)}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        (tmp / "octothinker-env.json").write_text(json.dumps({"pins": pinned, "command": cmd}, indent=1))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def run_reference(cases: Sequence[dict], mode: str = "port", src: Optional[str] = None,
                  timeout: float = 1800.0) -> dict:
    """Run the cases ({"response", "gold", "rule", "question"}) through OctoThinker's grading in the pinned
    environment: ``mode`` "port" (megatron_octo's port on the pinned libraries) or "upstream" (OctoThinker's
    own functions from the checkout ``src``). Returns {"versions", "results", "imported"}."""
    if mode not in ("port", "upstream"):
        raise ValueError(f"mode must be port or upstream, got {mode!r}")
    target = ensure_env()
    with tempfile.TemporaryDirectory(prefix="octothinker-ref-") as tmp:
        request, result = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request.write_text(json.dumps({"mode": mode, "src": src, "port": str(PORT), "pins": pins(),
                                       "cases": list(cases)}))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["OMP_NUM_THREADS"] = "1"
        res = subprocess.run([sys.executable, "-I", "-S", str(REFERENCE_SCRIPT), str(target), str(request),
                              str(result)], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp,
                             stdin=subprocess.DEVNULL)
        if res.returncode != 0 or not result.is_file():
            raise PinnedEnvError(f"the reference run in {target} failed (exit {res.returncode}):\n"
                                 f"{res.stderr[-4000:]}")
        return json.loads(result.read_text())
