"""Weights and the files that carry them: safe reading, what a file is, our safetensors files
with their configuration and dataset record, the authors' released checkpoints, ImageNet
initialisation, the named presets and the Hugging Face layout."""
