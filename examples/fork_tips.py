"""Fork: branches that share the prompt's KV cache, then join."""

from common import parse_args, start_backend

import sglang as sgl

TOPICS = ["a balanced diet", "regular exercise"]


@sgl.function
def health_tips(s, topics):
    s += sgl.system("You are a helpful health coach.")  # prefilled once for every branch
    forks = s.fork(len(topics))
    for topic, f in zip(topics, forks):
        f += sgl.user(f"Why is {topic} good for your health? Answer in one sentence.")
        f += sgl.assistant(sgl.gen("tip", max_tokens=48, stop="\n"))
    forks.join()  # child variables -> lists in the parent, in child order


@sgl.function
def capitals(s, countries):
    # The shared prefix (an example, then the question's start) is prefilled once.
    s += "Q: What is the capital of Germany?\nA: Berlin\nQ: What is the capital of "
    forks = s.fork(len(countries))
    forks += [c + "?\nA:" + sgl.gen("capital", max_tokens=8, stop="\n") for c in countries]
    forks.join()


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = health_tips.run(topics=TOPICS, backend=backend, temperature=0)
        for topic, tip in zip(TOPICS, state["tip"]):
            print(f"tip on {topic}: {tip.strip()}")
        countries = ["France", "Japan", "Italy"]
        state = capitals.run(countries=countries, backend=backend, temperature=0)
        for country, capital in zip(countries, state["capital"]):
            print(f"capital of {country}:{capital}")
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
