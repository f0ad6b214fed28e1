"""Qwen2-VL / Qwen2.5-VL on the tokenizer side: patches, placeholder expansion, M-RoPE positions.

Each image becomes rows of flattened (channel, time, patch, patch) pixels in merge-window order
(what the image processor writes) and `t * h * w / merge**2` "<|image_pad|>" tokens. A video is a
list of frames: each frame goes through the same image processor (resize, rescale, normalise,
patchify), then every `temporal_patch_size` consecutive frames share a patch row, as in the vision
tower's 3D patch embedding; a short last group repeats the last frame.

We compose the tokenizer and the image processor ourselves instead of calling transformers'
Qwen2-VL processors: those need torchvision for their video processor even to be constructed
(and resize video frames with torchvision's, not PIL's, interpolation), so the same code serves
images and videos with or without torchvision.

M-RoPE positions: a text token gets (i, i, i) for a running index i; a vision block starting at
running index s gets (s + t * step, s + row, s + col) over its merged grid, and the text after it
continues from the block's largest position + 1. `mrope_delta` is how far the positions after the
prompt are shifted from plain indices. (For a block with more time steps than rows and columns,
transformers 5.25 restarts the text at s + max(rows, cols) instead; every image and any video up
to that many temporal patches agree.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from sglang.runtime.multimodal.inputs import IMAGE, VIDEO, MultimodalInputs, MultimodalItem
from sglang.runtime.multimodal.processor import Frames, MultimodalProcessor

GridThw = Tuple[int, int, int]
# (first placeholder position, patch grid (t, h, w) before merging, time position step)
Block = Tuple[int, GridThw, float]

_KEYS = {IMAGE: ("pixel_values", "image_grid_thw"), VIDEO: ("pixel_values_videos", "video_grid_thw")}


@dataclass
class QwenVLProcessorParts:
    """What the family uses of a checkpoint's processing files (stands in for the HF processor)."""

    tokenizer: Any
    image_processor: Any
    chat_template: Optional[str] = None


def mrope_positions(num_tokens: int, blocks: Sequence[Block], merge: int) -> Tuple[torch.Tensor, int]:
    """([3, num_tokens] int64 positions, delta) for a prompt with vision `blocks` (by offset)."""
    positions = torch.empty(3, num_tokens, dtype=torch.int64)
    cursor, next_pos = 0, 0  # next prompt index to fill, next running position
    for offset, (t, h, w), step in blocks:
        text = offset - cursor
        positions[:, cursor:offset] = torch.arange(next_pos, next_pos + text)
        next_pos += text
        gh, gw = h // merge, w // merge
        tt = (torch.arange(t) * step).long()
        grid = torch.stack(torch.meshgrid(tt, torch.arange(gh), torch.arange(gw), indexing="ij"))
        block = grid.reshape(3, -1) + next_pos
        positions[:, offset:offset + block.shape[1]] = block
        cursor = offset + block.shape[1]
        next_pos = int(block.max()) + 1
    positions[:, cursor:] = torch.arange(next_pos, next_pos + num_tokens - cursor)
    top = int(positions.max()) + 1 if num_tokens else 0
    return positions, top - num_tokens


def expand_placeholders(text: str, token: str, counts: Sequence[int]) -> str:
    """`text` with its k-th `token` repeated counts[k] times."""
    pieces = text.split(token)
    if len(pieces) - 1 != len(counts):
        raise ValueError(f"the prompt has {len(pieces) - 1} {token!r} tokens for {len(counts)} inputs")
    out = [pieces[0]]
    for n, piece in zip(counts, pieces[1:]):
        out.append(token * n + piece)
    return "".join(out)


class Qwen2VLProcessor(MultimodalProcessor):
    image_placeholder = "<|image_pad|>"
    video_placeholder = "<|video_pad|>"
    image_prompt_text = "<|vision_start|><|image_pad|><|vision_end|>"
    video_prompt_text = "<|vision_start|><|video_pad|><|vision_end|>"

    @classmethod
    def load_hf_processor(cls, model_path: str, trust_remote_code: bool = False) -> QwenVLProcessorParts:
        """Tokenizer + image processor of the checkpoint (no torchvision needed)."""
        from transformers import AutoImageProcessor, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        image_processor = AutoImageProcessor.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        return QwenVLProcessorParts(tokenizer, image_processor, getattr(tokenizer, "chat_template", None))

    def __init__(self, hf_processor: Any, hf_config: Any):
        super().__init__(hf_processor, hf_config)
        self.image_processor = hf_processor.image_processor
        self.merge = int(hf_config.vision_config.spatial_merge_size)
        self.temporal_patch = int(self.image_processor.temporal_patch_size)
        self.patch = int(self.image_processor.patch_size)

    # ---------------------------------------------------------------- pixels and tokens
    def run_hf_processor(self, text: str, images: List[Any], videos: List[Frames]) -> Dict[str, torch.Tensor]:
        outputs: Dict[str, torch.Tensor] = {}
        try:
            if images:
                pixels = self.image_processor(images=images, return_tensors="pt")
                outputs["pixel_values"], outputs["image_grid_thw"] = pixels["pixel_values"], pixels["image_grid_thw"]
            if videos:
                outputs.update(self.video_pixels(videos))
        except ValueError:
            raise
        except Exception as exc:  # a processor failure is the input's problem, not the server's
            raise ValueError(f"the images could not be processed: {exc}") from exc
        for modality in (IMAGE, VIDEO):
            grid_key = _KEYS[modality][1]
            if grid_key in outputs:
                counts = (outputs[grid_key].prod(-1) // self.merge**2).tolist()
                token = self.image_placeholder if modality == IMAGE else self.video_placeholder
                text = expand_placeholders(text, token, counts)
        outputs["input_ids"] = self.hf_processor.tokenizer(text, return_tensors="pt")["input_ids"]
        return outputs

    def video_pixels(self, videos: List[Frames]) -> Dict[str, torch.Tensor]:
        rows, grids = [], []
        for frames in videos:
            pixels, grid = self.one_video(list(frames))
            rows.append(pixels)
            grids.append(grid)
        out = {"pixel_values_videos": torch.cat(rows), "video_grid_thw": torch.tensor(grids, dtype=torch.int64)}
        out.update(self.video_extras(len(videos)))
        return out

    def one_video(self, frames: Frames) -> Tuple[torch.Tensor, GridThw]:
        """Patch rows [t * h * w, C * tp * p * p] and the (t, h, w) grid of one video's frames."""
        if not frames:
            raise ValueError("a video needs at least one frame")
        sizes = {getattr(f, "size", None) for f in frames}
        if len(sizes) != 1:
            raise ValueError(f"all frames of a video must have one size; got {sorted(map(str, sizes))}")
        tp = self.temporal_patch
        frames = frames + [frames[-1]] * (-len(frames) % tp)  # a short last group repeats its last frame
        pixels = self.image_processor(images=frames, return_tensors="pt")
        _, h, w = (int(x) for x in pixels["image_grid_thw"][0])
        # Each frame's row holds the frame tp times along its time axis; keep one copy per frame
        # and give each group of tp frames one row.
        per_frame = pixels["pixel_values"].view(len(frames), h * w, -1, tp, self.patch * self.patch)[:, :, :, 0]
        t = len(frames) // tp
        grouped = per_frame.reshape(t, tp, h * w, -1, self.patch * self.patch).permute(0, 2, 3, 1, 4)
        return grouped.reshape(t * h * w, -1).contiguous(), (t, h, w)

    def video_extras(self, num_videos: int) -> Dict[str, torch.Tensor]:
        """Per-video side inputs beyond pixels and grids (Qwen2.5-VL: seconds per temporal patch)."""
        return {}

    # ---------------------------------------------------------------- items and positions
    def split_outputs(self, outputs: Dict[str, torch.Tensor], input_ids: List[int]) -> List[MultimodalItem]:
        items: List[MultimodalItem] = []
        for modality, (pixel_key, grid_key) in _KEYS.items():
            if grid_key not in outputs:
                continue
            grids = outputs[grid_key]
            pieces = torch.split(outputs[pixel_key], grids.prod(-1).tolist())
            per_item = [{pixel_key: p, grid_key: g[None].clone()} for p, g in zip(pieces, grids)]
            for i, features in enumerate(per_item):
                features.update(self.item_extras(modality, outputs, i))
            items += self.make_items(modality, self.spans(input_ids, modality), per_item)
        for item in items:
            expected = int(item.features[_KEYS[item.modality][1]].prod()) // self.merge**2
            if item.length != expected:
                raise ValueError(f"a {item.modality} has {item.length} placeholder tokens but its grid needs "
                                 f"{expected}; is a placeholder token written next to another?")
        return items

    def item_extras(self, modality: str, outputs: Dict[str, torch.Tensor], index: int) -> Dict[str, torch.Tensor]:
        """Features of one item beyond its pixels and grid (they enter its content hash)."""
        return {}

    def time_step(self, item: MultimodalItem) -> float:
        """Position step between consecutive temporal patches of `item`."""
        return 1.0

    def add_positions(self, mm: MultimodalInputs, input_ids: List[int], outputs: Dict[str, torch.Tensor]) -> None:
        blocks = [(it.offset, tuple(int(x) for x in it.features[_KEYS[it.modality][1]][0]), self.time_step(it))
                  for it in mm.items]
        mm.mrope_positions, mm.mrope_delta = mrope_positions(len(input_ids), blocks, self.merge)


class Qwen2_5_VLProcessor(Qwen2VLProcessor):
    # Frames come without a frame rate; assume Qwen's default sampling rate of 2 frames a second.
    video_fps = 2.0
    _SECONDS = "second_per_grid_t"

    def video_extras(self, num_videos: int) -> Dict[str, torch.Tensor]:
        return {"second_per_grid_ts": torch.full((num_videos,), self.temporal_patch / self.video_fps)}

    def item_extras(self, modality: str, outputs: Dict[str, torch.Tensor], index: int) -> Dict[str, torch.Tensor]:
        if modality != VIDEO:
            return {}
        return {self._SECONDS: outputs["second_per_grid_ts"][index:index + 1].clone()}

    def time_step(self, item: MultimodalItem) -> float:
        if item.modality != VIDEO:
            return 1.0
        tokens_per_second = self.hf_config.vision_config.tokens_per_second
        return float(tokens_per_second * item.features[self._SECONDS][0])
