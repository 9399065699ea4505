"""The Dockerfile's RUN bodies (`bash -n`) and the image scripts (docker/check_image.py,
docker/image_requirements.py), each a process started here.

docker/Dockerfile without Docker: hadolint is not packaged by Debian, so the file is parsed with buildkit's
own parser (the `dockerfile` package), every RUN body is checked by `bash -n`, every COPY source exists;
docker/check_image.py fails naming the missing GPU package on this CPU venv, and the image installs every
requirement of pyproject.toml except the ones the image provides."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.container_cases import dockerfile_commands as _commands
from tests.helpers import ROOT

INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
                "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def test_dockerfile_parses_and_every_run_is_valid_bash():
    cmds = _commands()
    unknown = [c.original for c in cmds if c.cmd.upper() not in INSTRUCTIONS]
    assert not unknown, unknown
    runs = [c for c in cmds if c.cmd.upper() == "RUN"]
    assert runs
    for c in runs:
        assert not c.json, c.original
        res = subprocess.run(["bash", "-n", "-c", c.value[0]], capture_output=True, text=True)
        assert res.returncode == 0, (c.original, res.stderr)
    for c in cmds:
        if c.cmd.upper() == "COPY":
            *sources, _dest = c.value
            for src in sources:
                assert (ROOT / src).exists(), f"COPY source missing: {src}"


def test_image_installs_our_megatron_core_pin_and_every_other_requirement():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("megatron-core=="))
    run_text = " ".join(c.value[0] for c in _commands() if c.cmd.upper() == "RUN")
    assert f'--no-deps "{pin}"' in run_text, run_text
    out = subprocess.run([sys.executable, str(ROOT / "docker" / "image_requirements.py"), str(ROOT / "pyproject.toml")],
                         capture_output=True, text=True, check=True).stdout.split()
    assert set(out) == {d for d in deps if not d.startswith(("torch", "megatron-core"))}, out


def test_check_image_fails_naming_the_missing_gpu_packages():
    res = subprocess.run([sys.executable, str(ROOT / "docker" / "check_image.py")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("check_image: ")]
    assert any(line.startswith("check_image: transformer_engine: not installed") and ">=2.9.0a0" in line
               for line in lines), lines
    assert any(line.startswith("check_image: apex: cannot import") for line in lines), lines
    assert any(line.startswith("check_image: flash_attn: not installed") for line in lines), lines
