"""Streaming: print text as it is generated (sync and asyncio)."""

import asyncio

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def write(s, request):
    s += sgl.user(request)
    s += sgl.assistant(sgl.gen("text", max_tokens=32))


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = write.run(request="Write a short poem about the sea.", stream=True,
                          backend=backend, temperature=0)
        for chunk in state.text_iter("text"):  # only the generated text, not the chat markup
            print(chunk, end="", flush=True)
        print()

        async def stream_async() -> None:
            state = write.run(request="Write two sentences about autumn.", stream=True,
                              backend=backend, temperature=0)
            async for chunk in state.text_async_iter("text"):
                print(chunk, end="", flush=True)
            print()

        asyncio.run(stream_async())
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
