"""Overrides that make the pipeline's stages the tiny model's, for the tests that run the pipeline CLI."""

TINY = ["--override", "all:model.preset=tiny", "--override", "all:model.vocab_size=8192",
        "--override", "all:train.eval_interval=0", "--override", "stable:train.tokens=16384",
        "--override", "decay:train.tokens=8192"]
