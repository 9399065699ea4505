#!/usr/bin/env python
"""Tokens per source of a mixture, and how many epochs of each source a token budget implies.

The command lives in ``megatron_octo.cli.data_stats`` (also the console script ``octo-data-stats``)."""

import sys

from megatron_octo.cli.data_stats import main

if __name__ == "__main__":
    sys.exit(main())
