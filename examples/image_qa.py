"""Image QA with `sgl.image`: one question about a picture, then a comparison of two pictures in
one state (any number of images per state), on a vision-language model.

    python examples/image_qa.py                          # a tiny random Qwen2-VL, built locally
    python examples/image_qa.py --model-path Qwen/Qwen2-VL-2B-Instruct --device cuda
    python examples/image_qa.py --url http://127.0.0.1:30000   # a running VLM server

The tiny model has random weights: it shows the machinery (images in prompts, the radix cache
reusing a repeated picture), not meaningful answers.
"""

import io

from common import parse_args

import sglang as sgl


def picture(color: tuple) -> bytes:
    """A small PNG drawn here, so the example needs no files or network."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 64), "white")
    ImageDraw.Draw(img).ellipse((16, 8, 80, 56), fill=color)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@sgl.function
def describe(s, image):
    s += sgl.user(sgl.image(image) + "What is in this picture?")
    s += sgl.assistant(sgl.gen("answer", max_tokens=16))


@sgl.function
def compare(s, first, second):
    s += sgl.user("First: " + sgl.image(first) + " Second: " + sgl.image(second) + " How do they differ?")
    s += sgl.assistant(sgl.gen("answer", max_tokens=16))


def start_vlm_backend(args):
    if args.url:
        return sgl.RuntimeEndpoint(args.url)
    if args.model_path:
        return sgl.Runtime(model_path=args.model_path, device=args.device)
    from sglang.testing.fixtures import tiny_vlm_dir

    return sgl.Runtime(model_path=tiny_vlm_dir("qwen2_vl"), device=args.device)


def main() -> None:
    backend = start_vlm_backend(parse_args(__doc__))
    sgl.set_default_backend(backend)
    try:
        red, blue = picture((220, 30, 30)), picture((30, 30, 220))
        state = describe.run(image=red, temperature=0)
        print("describe:", repr(state["answer"]), state.get_meta_info("answer"))
        again = describe.run(image=red, temperature=0)  # same picture: its KV comes from the cache
        print("again, cached tokens:", again.get_meta_info("answer")["cached_tokens"])
        both = compare.run(first=red, second=blue, temperature=0)
        print("compare:", repr(both["answer"]))
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
