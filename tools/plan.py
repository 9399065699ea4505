#!/usr/bin/env python
"""Plan a Llama-3 training run on a GPU cluster: memory per GPU, FLOPs, time, GPU-hours, layouts.

The command lives in ``megatron_octo.cli.plan`` (also the console script ``octo-plan``)."""

import sys

from megatron_octo.cli.plan import main

if __name__ == "__main__":
    sys.exit(main())
