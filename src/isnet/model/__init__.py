"""The network: its typed configuration, layers, backbones, context modules, heads and the segmentor.

The model knows nothing of files, data, training or deployment: it is built from a
:class:`~isnet.model.config.ModelConfig` and computes logits.
"""
