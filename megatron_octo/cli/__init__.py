"""Command-line entry points that are not a training stage: conversion, checkpoint merging, planning,
reports, data statistics. Each module has ``main(argv=None) -> int``; ``tools/<name>.py`` and the
``octo-*`` console scripts (pyproject.toml) call it."""
