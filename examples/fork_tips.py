"""Fork: expand two tips in parallel branches that share the prompt's KV cache, then join."""

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


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = tip_suggestion.run(backend=backend, temperature=0)
        print(state.text())
        print("detailed_tip (joined):", state["detailed_tip"])
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
