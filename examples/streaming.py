"""Streaming: print text as it is generated (sync and asyncio)."""

import asyncio

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def story(s, start):
    s += start + sgl.gen("continuation", max_tokens=32)


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = story.run(start="Name: Alice\n", stream=True, backend=backend, temperature=0)
        for chunk in state.text_iter():
            print(chunk, end="", flush=True)
        print()

        async def stream_async() -> None:
            state = story.run(start="Q: What is the capital of France?\n", stream=True,
                              backend=backend, temperature=0)
            async for chunk in state.text_async_iter("continuation"):
                print(chunk, end="", flush=True)
            print()

        asyncio.run(stream_async())
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
