"""run_batch: many programs at once (their shared prefix is prefilled once), plus asyncio."""

import asyncio

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def answer(s, question):
    s += "Answer each question in one line.\nQ: What is the capital of Germany?\nA: Berlin\n"
    s += "Q: " + question + "\nA:" + sgl.gen("answer", stop="\n", max_tokens=16)


QUESTIONS = ["What is the capital of France?", "What is the capital of Italy?",
             "What is the capital of Japan?", "What colour is the sky?"]


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        states = answer.run_batch([{"question": q} for q in QUESTIONS], backend=backend,
                                  progress_bar=True, temperature=0)
        for q, state in zip(QUESTIONS, states):
            meta = state.get_meta_info("answer")
            print(f"{q} ->{state['answer']}  (cached prompt tokens: {meta.get('cached_tokens')})")

        async def in_asyncio() -> list:
            return await answer.run_batch_async([{"question": q} for q in QUESTIONS[:2]],
                                                backend=backend, temperature=0)

        print("asyncio:", [s["answer"] for s in asyncio.run(in_asyncio())])
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
