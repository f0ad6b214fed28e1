"""The tokenizer side of a vision-language model: prompt text + images/videos -> token ids with
expanded placeholders + per-item processor outputs.

The model's own Hugging Face processor does the pixel work (resize, normalise, patchify) and the
placeholder expansion; a subclass per family says which token marks images, how to cut the batched
processor outputs into per-item tensors, and (M-RoPE models) how to position the tokens. This all
runs in the tokenization pool, never on the event loop.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from sglang.runtime.multimodal.inputs import IMAGE, VIDEO, MultimodalInputs, MultimodalItem, content_hash, placeholder_spans

Frames = List[Any]  # one video: its frames as PIL images


@dataclass
class ProcessedPrompt:
    input_ids: List[int]
    mm_inputs: MultimodalInputs


class MultimodalProcessor(ABC):
    """Base for one model family. Subclasses set the class attributes and `split_outputs`."""

    # The token the HF processor expands into one placeholder per encoder output row.
    image_placeholder: str = "<image>"
    video_placeholder: Optional[str] = None  # None: the family takes no video
    # What marks one image (or video) in prompt text; usually the placeholder, but e.g. Qwen2-VL
    # wraps it: "<|vision_start|><|image_pad|><|vision_end|>".
    image_prompt_text: Optional[str] = None
    video_prompt_text: Optional[str] = None

    def __init__(self, hf_processor: Any, hf_config: Any):
        self.hf_processor = hf_processor
        self.hf_config = hf_config
        tok = hf_processor.tokenizer
        self.image_token_id = tok.convert_tokens_to_ids(self.image_placeholder)
        self.video_token_id = tok.convert_tokens_to_ids(self.video_placeholder) if self.video_placeholder else None

    @property
    def image_text(self) -> str:
        return self.image_prompt_text or self.image_placeholder

    @property
    def video_text(self) -> Optional[str]:
        return self.video_prompt_text or self.video_placeholder

    @property
    def supports_video(self) -> bool:
        return self.video_placeholder is not None

    # ---------------------------------------------------------------- the pipeline
    def process(self, text: str, images: Sequence[Any] = (), videos: Sequence[Frames] = ()) -> ProcessedPrompt:
        if videos and not self.supports_video:
            raise ValueError(f"this model ({type(self).__name__.replace('Processor', '')}) does not accept "
                             f"video; send images")
        text = self._with_placeholders(text, len(images), len(videos))
        outputs = self.run_hf_processor(text, list(images), list(videos))
        input_ids = [int(t) for t in outputs["input_ids"][0].tolist()]
        items = self.split_outputs(outputs, input_ids)
        mm = MultimodalInputs(items=sorted(items, key=lambda it: it.offset))
        self.add_positions(mm, input_ids, outputs)
        return ProcessedPrompt(input_ids, mm)

    def _with_placeholders(self, text: str, n_images: int, n_videos: int) -> str:
        """Check that the text marks every image and video once; a text with no marks at all gets
        them in front (images, then videos), as a convenience for plain prompts."""
        found_i = text.count(self.image_placeholder)
        found_v = text.count(self.video_placeholder) if self.video_placeholder else 0
        if found_i == 0 and found_v == 0:
            return self.image_text * n_images + (self.video_text or "") * n_videos + text
        for kind, found, given, mark in (("image", found_i, n_images, self.image_placeholder),
                                         ("video", found_v, n_videos, self.video_placeholder)):
            if found != given:
                raise ValueError(f"the prompt marks {found} {kind}(s) with {mark!r} but {given} {kind}(s) "
                                 f"were given; put one {mark!r} where each {kind} belongs (or none at all "
                                 f"to place them before the text)")
        return text

    def run_hf_processor(self, text: str, images: List[Any], videos: List[Frames]) -> Dict[str, torch.Tensor]:
        # A prompt rendered by a chat template that writes BOS itself must not get a second one.
        bos = getattr(self.hf_processor.tokenizer, "bos_token", None)
        kwargs: Dict[str, Any] = {"text": [text], "return_tensors": "pt",
                                  "add_special_tokens": not (bos and text.startswith(bos))}
        if images:
            kwargs["images"] = images
        if videos:
            kwargs["videos"] = videos
        try:
            return dict(self.hf_processor(**kwargs))
        except ValueError:
            raise
        except Exception as exc:  # a processor failure is the input's problem, not the server's
            raise ValueError(f"the images could not be processed: {exc}") from exc

    @abstractmethod
    def split_outputs(self, outputs: Dict[str, torch.Tensor], input_ids: List[int]) -> List[MultimodalItem]:
        """One item per image/video, with that item's slice of the batched processor outputs."""

    def add_positions(self, mm: MultimodalInputs, input_ids: List[int], outputs: Dict[str, torch.Tensor]) -> None:
        """Hook for M-RoPE families; others use plain sequence positions."""

    # ---------------------------------------------------------------- helpers for subclasses
    def spans(self, input_ids: List[int], modality: str = IMAGE) -> List[tuple]:
        token = self.image_token_id if modality == IMAGE else self.video_token_id
        return placeholder_spans(input_ids, token)

    @staticmethod
    def make_items(modality: str, spans: List[tuple], per_item: List[Dict[str, torch.Tensor]]) -> List[MultimodalItem]:
        if len(spans) != len(per_item):
            raise ValueError(f"the processor produced {len(spans)} placeholder runs for {len(per_item)} "
                             f"{modality}(s); is a placeholder token written literally in the text?")
        return [MultimodalItem(modality, content_hash(f), f, off, n) for (off, n), f in zip(spans, per_item)]


VIDEO_MODALITY = VIDEO  # re-exported for family modules
