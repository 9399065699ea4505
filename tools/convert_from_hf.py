#!/usr/bin/env python
"""Hugging Face Llama directory -> megatron dist checkpoint at a chosen TP/PP.

The command lives in ``megatron_octo.cli.convert_from_hf`` (also the console script ``octo-convert-from-hf``)."""

import sys

from megatron_octo.cli.convert_from_hf import main

if __name__ == "__main__":
    sys.exit(main())
