"""LLaVA-NeXT: LLaVA with any-resolution tiling.

The processor sends each image as a downscaled whole-image tile followed by the tiles of a grid
chosen for the image's aspect ratio (multimodal/anyres.py). The rows fed to the language model are
the whole-image tile's features, then the grid's features laid out as one feature map, cropped to
the image's own aspect ratio (dropping the letterbox padding), each map line ending in the learned
`image_newline` row. Sizes follow the geometry, so the placeholder counts match the processor's.
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn
from transformers import PretrainedConfig

from sglang.runtime.models.llava import LlavaForConditionalGeneration
from sglang.runtime.multimodal.anyres import tile_grid, unpadded_box
from sglang.runtime.multimodal.inputs import MultimodalItem


class LlavaNextForConditionalGeneration(LlavaForConditionalGeneration):
    def __init__(self, config: PretrainedConfig):
        super().__init__(config)
        vision = config.vision_config
        self.tile = vision.image_size
        self.side = vision.image_size // vision.patch_size  # features per tile line
        self.pinpoints = [tuple(p) for p in config.image_grid_pinpoints]
        if self.vision_tower.has_class_token and self.strategy == "full":
            raise ValueError("LLaVA-NeXT lays tile features out on the patch grid, which a kept class token "
                             "breaks; use vision_feature_select_strategy 'default' with a CLIP tower")
        self.image_newline = nn.Parameter(torch.empty(config.text_config.hidden_size), requires_grad=False)

    def _image_hw(self, item: MultimodalItem) -> Tuple[int, int]:
        sizes = item.features.get("image_sizes")
        if sizes is None or sizes.numel() != 2:
            raise ValueError(f"a LLaVA-NeXT image needs its original (height, width) as image_sizes; the "
                             f"image at prompt position {item.offset} has {sizes}")
        height, width = (int(v) for v in sizes.reshape(2).tolist())
        return height, width

    def item_rows(self, item: MultimodalItem, tile_features: torch.Tensor) -> torch.Tensor:
        hidden = tile_features.shape[-1]
        base, grid_tiles = tile_features[0], tile_features[1:]
        newline = self.image_newline.to(tile_features.dtype)
        if grid_tiles.shape[0] == 0:  # a lone whole-image tile: its rows and one newline
            return torch.cat([base, newline[None]])
        hw = self._image_hw(item)
        rows, cols = tile_grid(hw, self.pinpoints, self.tile)
        if rows * cols != grid_tiles.shape[0]:
            raise ValueError(f"a {hw[0]}x{hw[1]} image tiles into a {rows}x{cols} grid but "
                             f"{grid_tiles.shape[0]} grid tiles were sent; the processor's "
                             f"image_grid_pinpoints must match config.json's")
        s = self.side
        fmap = grid_tiles.reshape(rows, cols, s, s, hidden).permute(0, 2, 1, 3, 4).reshape(rows * s, cols * s, hidden)
        top, bottom, left, right = unpadded_box(hw, (rows * s, cols * s))
        fmap = fmap[top:bottom, left:right]
        lines = torch.cat([fmap, newline.expand(fmap.shape[0], 1, hidden)], dim=1)
        return torch.cat([base, lines.reshape(-1, hidden)])
