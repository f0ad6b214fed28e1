"""Validate and tokenize generate requests in the tokenization pool, never on the event loop.

Everything whose cost grows with the input runs in a worker thread: normalising the request
(a scan of every input id), encoding the prompt, encoding the stop strings (SamplingParams.
normalize). Size limits come first, so input that cannot fit is refused before it is encoded:
prompts by byte size (see prompt_limits), token-id prompts by length, stop strings by number and
length (see sampling_params).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, List, Optional, Tuple, Union

from sglang.runtime.managers.generate_input import GenerateReqInput, SingleGenerateInput
from sglang.runtime.managers.io_struct import TokenizedGenerateReq
from sglang.runtime.managers.prompt_limits import PromptLimits
from sglang.runtime.managers.tokenization_pool import TokenizationPool, settle
from sglang.runtime.sampling.sampling_params import SamplingParams

PromptLike = Union[str, List[int]]


class RequestTokenizer:
    def __init__(self, tokenizer: Optional[Any], context_len: int, vocab_size: int,
                 pool: Optional[TokenizationPool] = None, mm_processor: Optional[Any] = None,
                 media: Optional[Any] = None):
        self.tokenizer = tokenizer
        self.context_len = context_len
        self.vocab_size = vocab_size
        self.limits = PromptLimits(tokenizer, context_len)
        settle(tokenizer)
        self.pool = pool or TokenizationPool()
        # Vision-language models: the family processor (multimodal/processor.py) and the loader of
        # what requests name (multimodal/media.py); None for text-only models.
        self.mm_processor = mm_processor
        self.media = media

    async def run(self, fn, *args: Any, **kwargs: Any):
        """Any tokenizer-bound work (chat templates, /tokenize) in the pool."""
        return await self.pool.run(fn, *args, **kwargs)

    def close(self) -> None:
        self.pool.shutdown()

    # ---------------------------------------------------------------- worker-side (blocking)
    def encode(self, text: str, add_special_tokens: bool = True, name: str = "the prompt") -> List[int]:
        """Token ids of a prompt, refused first if its size cannot fit the context."""
        if self.tokenizer is None:
            raise ValueError("this server runs without a tokenizer (--skip-tokenizer-init): send input_ids")
        self.limits.check_text(text, name)
        return list(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))

    def process_media(self, text: Optional[str], image_data: List[Any], video_data: List[Any]) -> Tuple[List[int], Any]:
        """Token ids of `text` with expanded image/video placeholders, and the processed items
        (MultimodalInputs). Loading, decoding and the HF processor all run here, in the pool."""
        if self.mm_processor is None:
            kinds = " and ".join(k for k, v in (("image_data", image_data), ("video_data", video_data)) if v)
            raise ValueError(f"this model does not accept images or video ({kinds} was given): it is a text-only "
                             f"model; send text or input_ids only")
        if text is None:
            raise ValueError("image_data/video_data need a text prompt ('text'), so the placeholders can be "
                             "expanded; input_ids cannot carry images")
        if video_data and not self.mm_processor.supports_video:
            raise ValueError("this model does not accept video (video_data was given); send images")
        self.limits.check_text(text, "the prompt")
        images = [self.media.load_image(x) for x in image_data]
        videos = [self.media.load_video(x) for x in video_data]
        processed = self.mm_processor.process(text, images, videos)
        return processed.input_ids, processed.mm_inputs

    def tokenize_one(self, item: SingleGenerateInput) -> TokenizedGenerateReq:
        params = SamplingParams.from_dict(item.sampling_params)  # stop-string limits before encoding
        mm_inputs = item.mm_inputs  # already processed (chat completions do it while planning)
        if mm_inputs is not None:
            ids = item.input_ids
        elif item.image_data or item.video_data:
            ids, mm_inputs = self.process_media(item.text, item.image_data, item.video_data)
        else:
            ids = item.input_ids if item.input_ids is not None else self.encode(item.text)
        if not ids:
            raise ValueError("the prompt is empty: give text or at least one input id")
        self.limits.check_ids(ids)
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(f"input_ids must be in [0, {self.vocab_size})")
        params.verify(self.vocab_size)  # before normalize, which maps temperature 0 to top_k 1
        params.normalize(self.tokenizer)
        if item.logprob_start_len >= len(ids):
            raise ValueError(f"logprob_start_len ({item.logprob_start_len}) must be smaller than the prompt "
                             f"length ({len(ids)})")
        if item.top_logprobs_num < 0:
            raise ValueError("top_logprobs_num must be >= 0")
        self._check_logprob_targets(item)
        return TokenizedGenerateReq(
            rid=item.rid, input_text=item.text, input_ids=list(ids), sampling_params=params,
            return_logprob=item.return_logprob, logprob_start_len=item.logprob_start_len,
            top_logprobs_num=item.top_logprobs_num, token_ids_logprob=item.token_ids_logprob,
            stream=item.stream, created_time=time.time(), mm_inputs=mm_inputs, lora_path=item.lora_path,
        )

    def _check_logprob_targets(self, item: SingleGenerateInput) -> None:
        # Out-of-range values would otherwise fail inside the scheduler, for the whole batch.
        if item.logprob_start_len < -1:
            raise ValueError(f"logprob_start_len must be -1 (output only) or >= 0, got {item.logprob_start_len}")
        bad = [t for t in item.token_ids_logprob or [] if not 0 <= t < self.vocab_size]
        if bad:
            raise ValueError(f"token_ids_logprob entries must be token ids in [0, {self.vocab_size}), got {bad[0]}")

    def prompt_ids(self, prompt: PromptLike, name: str) -> List[int]:
        """A text or token-id prompt as checked token ids (concat_and_append's inputs)."""
        if isinstance(prompt, str):
            ids = self.encode(prompt, name=f"'{name}'")
        elif isinstance(prompt, list):
            self.limits.check_ids(prompt, f"'{name}'")
            if not all(isinstance(x, int) and not isinstance(x, bool) for x in prompt):
                raise ValueError(f"'{name}' must be a string or a list of token ids")
            ids = list(prompt)
        else:
            raise ValueError(f"'{name}' must be a string or a list of token ids, got {type(prompt).__name__}")
        if not ids:
            raise ValueError(f"'{name}' is empty")
        if min(ids) < 0 or max(ids) >= self.vocab_size:
            raise ValueError(f"'{name}' token ids must be in [0, {self.vocab_size})")
        return ids

    # ---------------------------------------------------------------- loop-side
    async def tokenize_request(self, obj: GenerateReqInput) -> Tuple[List[SingleGenerateInput],
                                                                     List[TokenizedGenerateReq]]:
        """All prompts of a request, validated and tokenized (all before any is sent)."""
        items = await self.pool.run(obj.normalize, self.limits)
        tokenized = await asyncio.gather(*[self.pool.run(self.tokenize_one, item) for item in items])
        return items, list(tokenized)

    async def prompt_ids_many(self, prompts: List[Tuple[PromptLike, str]]) -> List[List[int]]:
        return list(await asyncio.gather(*[self.pool.run(self.prompt_ids, p, name) for p, name in prompts]))
