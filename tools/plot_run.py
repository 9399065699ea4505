#!/usr/bin/env python
"""Render a run directory's report: ``report.md`` with one table per stage kind, and PNG plots.

The command lives in ``megatron_octo.cli.plot_run`` (also the console script ``octo-plot-run``)."""

import sys

from megatron_octo.cli.plot_run import main

if __name__ == "__main__":
    sys.exit(main())
