"""docker/Dockerfile without Docker: hadolint is not packaged by Debian, so the file is parsed with buildkit's
own parser (the `dockerfile` package), and the base image is the pinned tag docs/launching.md names. The checks
that start processes (`bash -n` on every RUN body, docker/check_image.py, docker/image_requirements.py) are in
tests/process/test_container_checks.py."""

from __future__ import annotations

import re

from tests.container_cases import dockerfile_commands as _commands
from tests.helpers import ROOT


def test_base_image_is_the_pinned_ngc_tag_named_in_the_docs():
    froms = [c for c in _commands() if c.cmd.upper() == "FROM"]
    assert len(froms) == 1, froms
    image = froms[0].value[0]
    assert re.fullmatch(r"nvcr\.io/nvidia/pytorch:\d\d\.\d\d-py3", image), image   # a dated tag, never latest
    assert f"`{image}`" in (ROOT / "docs" / "launching.md").read_text()
