"""GGUF checkpoints (llama.cpp's single-file format): path rules, metadata -> HF config, GGUF tensor
names -> our parameter names, and weights dequantized at load.

- `files`: which paths name a GGUF checkpoint (import-light: no torch, no gguf).
- `checkpoint`: the open file (the `gguf` package's reader) and its metadata.
- `archs`: what differs per architecture (names, llama.cpp's conversion transforms, config extras).
- `config`: the transformers config a GGUF's metadata describes.
- `rope_freqs`: Llama 3 rope scaling recovered from llama.cpp's `rope_freqs` tensor.
- `weights`: tensors streamed one at a time, dequantized into the model dtype.

This package's `__init__` imports nothing, so `checkpoint_path` (run before torch is imported)
can use `files` cheaply.
"""
