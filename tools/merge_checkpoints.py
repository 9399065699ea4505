#!/usr/bin/env python
"""Weighted average of checkpoints' model weights (model souping) -> one TP=1 PP=1 dist checkpoint.

The command lives in ``megatron_octo.cli.merge_checkpoints`` (also the console script ``octo-merge-checkpoints``)."""

import sys

from megatron_octo.cli.merge_checkpoints import main

if __name__ == "__main__":
    sys.exit(main())
