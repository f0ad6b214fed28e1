"""Gemma 3 on the tokenizer side.

Prompt text marks an image with "<start_of_image>"; the Hugging Face processor expands each mark
to "\\n\\n<start_of_image>" + mm_tokens_per_image x "<image_soft_token>" + "<end_of_image>\\n\\n".
So the mark counted in text (our `image_placeholder`) and the token whose runs hold the encoder
rows (`image_soft_token`) differ: runs are found by the latter. With pan-and-scan on, an image
also gets one expanded block per crop; every block (original or crop) is one item with its own
[1, 3, S, S] pixels, in the processor's order (each image, then its crops).

The request's inputs are marked `bidirectional`: an image's tokens attend to each other both ways
in prefill, so the scheduler must never cut one (multimodal/bidirectional.py).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch

from sglang.runtime.multimodal.inputs import IMAGE, MultimodalItem, placeholder_spans
from sglang.runtime.multimodal.processor import Frames, MultimodalProcessor, ProcessedPrompt


class Gemma3Processor(MultimodalProcessor):
    image_placeholder = "<start_of_image>"
    image_soft_token = "<image_soft_token>"

    def __init__(self, hf_processor: Any, hf_config: Any):
        super().__init__(hf_processor, hf_config)
        self.soft_token_id = hf_processor.tokenizer.convert_tokens_to_ids(self.image_soft_token)

    def process(self, text: str, images: Sequence[Any] = (), videos: Sequence[Frames] = ()) -> ProcessedPrompt:
        processed = super().process(text, images, videos)
        processed.mm_inputs.bidirectional = True
        return processed

    def split_outputs(self, outputs: Dict[str, torch.Tensor], input_ids: List[int]) -> List[MultimodalItem]:
        if "pixel_values" not in outputs:
            return []
        pixels = outputs["pixel_values"]
        spans = placeholder_spans(input_ids, self.soft_token_id)
        expected = int(self.hf_config.mm_tokens_per_image)
        bad = [n for _, n in spans if n != expected]
        if bad:
            raise ValueError(f"an image placeholder run has {bad[0]} '{self.image_soft_token}' tokens, not "
                             f"{expected}; is '{self.image_soft_token}' written literally in the text?")
        per_item = [{"pixel_values": pixels[i:i + 1].contiguous()} for i in range(pixels.shape[0])]
        return self.make_items(IMAGE, spans, per_item)
