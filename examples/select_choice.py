"""Select: score every choice with the model (one batched prefill on our runtime)."""

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def classify(s, review):
    s += "Review: " + review + " Sentiment:"
    s += sgl.select("sentiment", choices=[" positive", " negative"])


@sgl.function
def pick_tool(s, question):
    s += "Question: " + question + "\nBest tool: "
    s += sgl.select("tool", choices=["calculator", "search engine", "dictionary"],
                    choices_method=sgl.greedy_token_selection)


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        for review in ("I loved it.", "It was awful."):
            state = classify.run(review=review, backend=backend)
            meta = state.get_meta_info("sentiment")
            print(f"{review!r} ->{state['sentiment']}  scores={meta.get('scores') or meta.get('means')}")
        print("tool:", pick_tool.run(question="What is 12 * 7?", backend=backend)["tool"])
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
