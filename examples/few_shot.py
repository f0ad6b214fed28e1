"""Few-shot prompting: examples as constant text, then a one-line answer."""

from common import parse_args, start_backend

import sglang as sgl

EXAMPLES = [("What is the capital of France?", "Paris"),
            ("What is the capital of Italy?", "Rome")]


@sgl.function
def few_shot_qa(s, question):
    for q, a in EXAMPLES:
        s += f"Q: {q}\nA: {a}\n"
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=16)


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = few_shot_qa.run(question="What is the capital of Japan?", backend=backend,
                                temperature=0)
        print(state.text())
        print("answer:", repr(state["answer"]))
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
