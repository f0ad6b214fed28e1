"""LLaVA (1.5) and LLaVA-NeXT on the tokenizer side.

Both mark an image with "<image>", which the Hugging Face processor expands to one token per
encoder row. Two images written next to each other ("<image><image>") expand to one unbroken run,
so runs are cut by each image's known row count rather than taken as one image each.

- LLaVA: pixel_values [images, 3, H, W]; an item keeps its [1, 3, H, W].
- LLaVA-NeXT: pixel_values [images, max tiles, 3, H, W] (zero tiles pad images with fewer) and
  image_sizes [images, 2]; an item keeps its own tiles (padding dropped) and its original size.
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

import torch

from sglang.runtime.models.clip_vision import CLIP_TYPES
from sglang.runtime.multimodal.anyres import num_tiles, packed_rows
from sglang.runtime.multimodal.inputs import IMAGE, MultimodalItem
from sglang.runtime.multimodal.processor import MultimodalProcessor


def cut_runs(runs: Sequence[Tuple[int, int]], lengths: Sequence[int]) -> List[Tuple[int, int]]:
    """(offset, length) of each image, given the placeholder runs and every image's row count in
    order; a run may hold several adjacent images but never part of one."""
    spans: List[Tuple[int, int]] = []
    todo = list(lengths)
    for offset, run in runs:
        end = offset + run
        while offset < end and todo and offset + todo[0] <= end:
            spans.append((offset, todo[0]))
            offset += todo.pop(0)
        if offset != end:
            break
    if todo or len(spans) != len(lengths) or sum(lengths) != sum(r for _, r in runs):
        raise ValueError(f"the prompt's image placeholder runs {[r for _, r in runs]} do not fit "
                         f"{len(lengths)} image(s) of {list(lengths)} tokens; is '<image>' written "
                         f"in the text more often than images were given?")
    return spans


class LlavaProcessor(MultimodalProcessor):
    image_placeholder = "<image>"
    # With no marks in the text, images go first, one per line (as LLaVA's chat template writes them).
    image_prompt_text = "<image>\n"

    def image_rows(self, outputs: Dict[str, torch.Tensor], index: int) -> int:
        """Encoder rows of image `index`: one per patch, plus CLIP's class token when the model keeps it."""
        vision = self.hf_config.vision_config
        side = vision.image_size // vision.patch_size
        keeps_class = self.hf_config.vision_feature_select_strategy == "full" and vision.model_type in CLIP_TYPES
        return side * side + keeps_class

    def item_features(self, outputs: Dict[str, torch.Tensor], index: int) -> Dict[str, torch.Tensor]:
        return {"pixel_values": outputs["pixel_values"][index:index + 1].contiguous()}

    def split_outputs(self, outputs: Dict[str, Any], input_ids: List[int]) -> List[MultimodalItem]:
        if "pixel_values" not in outputs:
            return []
        count = outputs["pixel_values"].shape[0]
        lengths = [self.image_rows(outputs, i) for i in range(count)]
        spans = cut_runs(self.spans(input_ids), lengths)
        return self.make_items(IMAGE, spans, [self.item_features(outputs, i) for i in range(count)])


class LlavaNextProcessor(LlavaProcessor):
    def _image_hw(self, outputs: Dict[str, torch.Tensor], index: int) -> Tuple[int, int]:
        height, width = (int(v) for v in outputs["image_sizes"][index].tolist())
        return height, width

    def image_rows(self, outputs: Dict[str, torch.Tensor], index: int) -> int:
        vision = self.hf_config.vision_config
        return packed_rows(self._image_hw(outputs, index), self.hf_config.image_grid_pinpoints,
                           vision.image_size, vision.image_size // vision.patch_size)

    def item_features(self, outputs: Dict[str, torch.Tensor], index: int) -> Dict[str, torch.Tensor]:
        hw = self._image_hw(outputs, index)
        tiles = num_tiles(hw, self.hf_config.image_grid_pinpoints, self.hf_config.vision_config.image_size)
        pixels = outputs["pixel_values"][index]
        if tiles > pixels.shape[0]:
            raise ValueError(f"the image processor made {pixels.shape[0]} tiles for a {hw[0]}x{hw[1]} image "
                             f"that needs {tiles}; preprocessor_config.json's image_grid_pinpoints must "
                             f"match config.json's")
        return {"pixel_values": pixels[:tiles].contiguous(),
                "image_sizes": torch.tensor(hw, dtype=torch.int64)}
