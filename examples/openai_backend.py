"""The OpenAI backend against our own server's OpenAI-compatible API (any such endpoint works:
pass --url and a model name; for api.openai.com set OPENAI_API_KEY)."""

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def chat(s, question):
    s += sgl.system("You are a helpful assistant.")
    s += sgl.user(question)
    s += sgl.assistant(sgl.gen("answer", max_tokens=32))


@sgl.function
def complete(s, review):
    s += "Review: " + review + " Sentiment:"
    s += sgl.select("sentiment", choices=[" positive", " negative"])


def main() -> None:
    args = parse_args(__doc__)
    server = start_backend(args)  # our server; its /v1 routes are what the OpenAI backend calls
    base_url = (args.url or server.url).rstrip("/") + "/v1"
    try:
        as_chat = sgl.OpenAI("default", base_url=base_url, is_chat_model=True)
        state = chat.run(question="What is the capital of France?", backend=as_chat, temperature=0)
        print("chat:", repr(state["answer"]), "| calls:", as_chat.num_api_calls)
        as_completion = sgl.OpenAI("default", base_url=base_url, is_chat_model=False)
        state = complete.run(review="I loved it.", backend=as_completion)
        print("select via echo logprobs:", repr(state["sentiment"]))
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
