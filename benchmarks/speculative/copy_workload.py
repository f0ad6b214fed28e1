"""Copy-heavy chat prompts for the NGRAM benchmark: rewrite or continue a given passage, edit a
code block. The answers repeat long spans of the prompt, which is where prompt lookup pays."""

from __future__ import annotations

from typing import List

PASSAGES = [
    "The lighthouse stood at the edge of the cliff for more than two hundred years. Every night its "
    "keeper climbed the one hundred and twelve steps to light the lamp, and every morning he walked "
    "back down to write the weather in a thick leather book. Ships passing the point learned to trust "
    "the slow white flash that swept the water every ten seconds, and fishermen said that as long as "
    "the light turned, the village would be safe from the sea.",
    "Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide "
    "into sugar and oxygen. It takes place mostly in the leaves, inside small structures called "
    "chloroplasts, which contain the green pigment chlorophyll. The sugar feeds the plant and the "
    "oxygen is released into the air, which is why forests are sometimes called the lungs of the earth.",
    "Our team meeting is moved from Tuesday to Thursday at ten in the morning. Please bring the updated "
    "sales figures for the third quarter, the draft budget for next year, and any questions about the "
    "new travel policy. If you cannot attend, send your notes to the project lead before Wednesday "
    "evening so they can be added to the agenda.",
]

CODE = [
    "def total_price(items, tax):\n    x = 0\n    for item in items:\n        x = x + item.price * item.count\n"
    "    x = x * (1 + tax)\n    return round(x, 2)\n\n\ndef cheapest(items):\n    best = None\n    for item in items:\n"
    "        if best is None or item.price < best.price:\n            best = item\n    return best\n",
    "class Stack:\n    def __init__(self):\n        self.data = []\n\n    def push(self, x):\n        self.data.append(x)\n\n"
    "    def pop(self):\n        return self.data.pop()\n\n    def peek(self):\n        return self.data[-1]\n\n"
    "    def size(self):\n        return len(self.data)\n",
]


def copy_messages() -> List[str]:
    """User messages, one task each."""
    out = []
    for p in PASSAGES:
        out.append(f"Rewrite the following passage exactly, changing nothing:\n\n{p}")
        out.append(f"Repeat this text word for word, then stop:\n\n{p}")
    for c in CODE:
        out.append(f"Rename the variable `x` to `value` in this code and return the whole code block:\n\n```python\n{c}```")
        out.append(f"Add a docstring to each function and return the complete code:\n\n```python\n{c}```")
    return out


def chat_prompts(tokenizer, n: int) -> List[str]:
    """`n` prompts (the tasks cycled) rendered with the model's chat template."""
    msgs = copy_messages()
    return [tokenizer.apply_chat_template([{"role": "user", "content": msgs[i % len(msgs)]}], tokenize=False,
                                          add_generation_prompt=True) for i in range(n)]
