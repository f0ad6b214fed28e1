"""Images and video on the local runtime.

Tokenizer side: `media` loads what a request names (bytes, base64, data URLs, allowed files and
URLs), `processor` runs the model's Hugging Face processor in the tokenization pool and expands the
placeholder tokens, `shared_tensor` moves large pixel tensors to the scheduler through shared
memory. Model side: `encoder_cache` keeps vision-encoder outputs by content hash, `embedding`
scatters them over the placeholder rows of an extend pass (also when chunked prefill cuts an image).
"""
