"""Quick start: a multi-turn chat program with role blocks and two generations."""

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def multi_turn_question(s, question_1, question_2):
    s += sgl.user(question_1)
    s += sgl.assistant(sgl.gen("answer_1", max_tokens=32))
    s += sgl.user(question_2)
    s += sgl.assistant(sgl.gen("answer_2", max_tokens=32))


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    sgl.set_default_backend(backend)
    try:
        state = multi_turn_question.run(
            question_1="What is the capital of France?",
            question_2="What is the capital of Japan?", temperature=0)
        for message in state.messages():
            print(f"{message['role']}: {message['content']}")
        print("answer_1 meta:", state.get_meta_info("answer_1"))
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
