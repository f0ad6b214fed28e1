"""Fork: branches that share the prompt's KV cache, then join (tips for a real model; capitals
that the embedded tiny model knows)."""

from common import parse_args, start_backend

import sglang as sgl


@sgl.function
def tip_suggestion(s):
    s += ("Here are two tips for staying healthy: "
          "1. Balanced Diet. 2. Regular Exercise.\n\n")
    forks = s.fork(2)
    for i, f in enumerate(forks):
        f += f"Now, expand tip {i + 1} into a paragraph:\n"
        f += sgl.gen("detailed_tip", max_tokens=32, stop="\n\n")
    s += "Tip 1:" + forks[0]["detailed_tip"] + "\n"
    s += "Tip 2:" + forks[1]["detailed_tip"] + "\n"
    s += "In summary," + sgl.gen("summary", max_tokens=16)
    forks.join()  # child variables -> lists in the parent, in child order


@sgl.function
def capitals(s, countries):
    s += "Q: What is the capital of "  # the shared prefix, prefilled once for all branches
    forks = s.fork(len(countries))
    forks += [c + "?\nA:" + sgl.gen("capital", max_tokens=8, stop="\n") for c in countries]
    forks.join()


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = tip_suggestion.run(backend=backend, temperature=0)
        print(state.text())
        print("detailed_tip (joined):", state["detailed_tip"])
        countries = ["France", "Japan", "Italy"]
        state = capitals.run(countries=countries, backend=backend, temperature=0)
        for country, capital in zip(countries, state["capital"]):
            print(f"capital of {country}:{capital}")
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
