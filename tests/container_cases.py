"""docker/Dockerfile as buildkit's own parser (the `dockerfile` package) reads it, for the container tests."""

from __future__ import annotations

import dockerfile

from tests.helpers import ROOT

DOCKERFILE = ROOT / "docker" / "Dockerfile"


def dockerfile_commands():
    return dockerfile.parse_file(str(DOCKERFILE))
