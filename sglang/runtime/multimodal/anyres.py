"""Any-resolution tiling geometry (LLaVA-NeXT): which grid an image is tiled on, and which part of
the tiled feature map shows the image rather than its letterbox padding.

Both sides need it: the processor to cut the batch's padded tiles per image and to know how many
placeholder rows each image takes, the model to lay the tile features out and crop them. The
arithmetic (integer truncation, rounding to 7 decimals, strict aspect comparison) follows
LLaVA-NeXT's reference so placeholder counts agree with the Hugging Face processor's exactly.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

Size = Tuple[int, int]  # (height, width)


def best_resolution(image_hw: Size, pinpoints: Sequence[Sequence[int]]) -> Size:
    """The grid resolution (height, width) that keeps the most of the image after an aspect-kept
    downscale, and among equals wastes the least area."""
    height, width = image_hw
    best, best_kept, best_waste = None, 0, math.inf
    for cand_h, cand_w in pinpoints:
        scale = min(cand_w / width, cand_h / height)
        kept = min(int(width * scale) * int(height * scale), width * height)
        waste = cand_w * cand_h - kept
        if kept > best_kept or (kept == best_kept and waste < best_waste):
            best, best_kept, best_waste = (int(cand_h), int(cand_w)), kept, waste
    if best is None:
        raise ValueError(f"no image grid fits an image of {height}x{width} pixels; image_grid_pinpoints "
                         f"{list(pinpoints)} must hold positive (height, width) pairs")
    return best


def tile_grid(image_hw: Size, pinpoints: Sequence[Sequence[int]], tile: int) -> Size:
    """(rows, columns) of `tile`-pixel tiles the image is cut into, besides its whole-image tile."""
    grid_h, grid_w = best_resolution(image_hw, pinpoints)
    return math.ceil(grid_h / tile), math.ceil(grid_w / tile)


def num_tiles(image_hw: Size, pinpoints: Sequence[Sequence[int]], tile: int) -> int:
    """Tiles the processor makes for one image: the grid plus the downscaled whole image."""
    rows, cols = tile_grid(image_hw, pinpoints, tile)
    return rows * cols + 1


def unpadded_box(image_hw: Size, feature_hw: Size) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) of the region of a `feature_hw` map that covers an image of
    `image_hw` pixels letterboxed into it (the padding rows or columns are split evenly)."""
    height, width = image_hw
    feat_h, feat_w = feature_hw
    if width / height > feat_w / feat_h:  # wider than the map: padding above and below
        kept = int(round(height * (feat_w / width), 7))
        pad = (feat_h - kept) // 2
        return pad, feat_h - pad, 0, feat_w
    kept = int(round(width * (feat_h / height), 7))
    pad = (feat_w - kept) // 2
    return 0, feat_h, pad, feat_w - pad


def packed_rows(image_hw: Size, pinpoints: Sequence[Sequence[int]], tile: int, side: int) -> int:
    """Rows LLaVA-NeXT feeds the language model for one image: the whole-image tile's side x side
    features, then the unpadded tile features with one newline row ending each line."""
    rows, cols = tile_grid(image_hw, pinpoints, tile)
    top, bottom, left, right = unpadded_box(image_hw, (rows * side, cols * side))
    return side * side + (bottom - top) * (right - left + 1)
