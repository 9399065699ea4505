"""Published facts of the Llama-3 checkpoints that the model tests compare the presets with."""

# Hugging Face parameter counts of the released checkpoints.
PUBLISHED = {"llama3.2-1b": 1_235_814_400, "llama3.2-3b": 3_212_749_824, "llama3.1-8b": 8_030_261_248}
