#!/usr/bin/env python
"""Megatron dist checkpoint (any TP/PP: stable, decay, RL, or convert_from_hf output) -> Hugging Face.

The command lives in ``megatron_octo.cli.convert_to_hf`` (also the console script ``octo-convert-to-hf``)."""

import sys

from megatron_octo.cli.convert_to_hf import main

if __name__ == "__main__":
    sys.exit(main())
