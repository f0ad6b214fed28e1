"""Time a vision tower alone: `encode_multimodal` over N images of one size, dummy weights, on the
model's device and dtype; with `--profile`, the top kernels by device time.

    python benchmarks/multimodal/profile_encoder.py --model-path DIR --num-images 21 --image-size 448
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from sglang.runtime.models.loader import load_model
from sglang.runtime.models.model_config import ModelConfig
from sglang.runtime.multimodal.registry import load_multimodal_processor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--num-images", type=int, nargs="+", default=[1, 21, 64])
    parser.add_argument("--image-size", type=int, default=448)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    config = ModelConfig(args.model_path, device=args.device)
    model = load_model(config, "dummy", args.device)
    proc = load_multimodal_processor(args.model_path, config.architecture)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (args.image_size, args.image_size, 3), dtype=np.uint8))
              for _ in range(max(args.num_images))]
    items = proc.process(proc.image_text * len(images) + "x", images).mm_inputs.items
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rows = {}
    with torch.inference_mode():
        for n in args.num_images:
            model.encode_multimodal(items[:n])
            sync()
            start = time.perf_counter()
            for _ in range(args.repeats):
                model.encode_multimodal(items[:n])
            sync()
            ms = (time.perf_counter() - start) / args.repeats * 1e3
            rows[n] = {"ms": round(ms, 2), "ms_per_image": round(ms / n, 2)}
            print(f"{n} images: {ms:.1f} ms ({ms / n:.2f} ms/image)")
        if args.profile and args.device == "cuda":
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CUDA, ProfilerActivity.CPU]) as prof:
                model.encode_multimodal(items[:args.num_images[-1]])
                sync()
            print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18))
    print(json.dumps({"device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                      "dtype": str(config.dtype), "image_size": args.image_size, "encode": rows}))


if __name__ == "__main__":
    main()
