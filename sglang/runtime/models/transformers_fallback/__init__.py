"""Transformers fallback: architectures we do not implement run on transformers' own modeling code,
with our paged KV cache and attention backends plugged in through its attention-interface registry.

- `select.py` decides, once per start, which implementation serves a checkpoint (`--model-impl`)
  and refuses models whose attention our kernels cannot serve;
- `attention_bridge.py` is the attention function transformers calls: it reads and writes our KV
  pool through the current ForwardBatch;
- `model.py` wraps the transformers model behind the interface our model runner calls.

Imported lazily (registry / model_config) so a plain start never pays for it.
"""
