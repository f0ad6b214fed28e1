"""The prompts both sides of the CPU comparison get, as token ids (so both read exactly the same).

Chat questions go through the GGUF's own chat template; the long prompt for time-to-first-token is
a chat turn over a passage, cut to an exact token count.
"""

from __future__ import annotations

from typing import List

QUESTIONS = (
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Explain what a prime number is.",
    "Write a haiku about the ocean.",
    "How do airplanes stay in the air?",
    "What is the difference between weather and climate?",
    "Name three planets in our solar system.",
    "Why is the sky blue?",
    "Describe a cat in two sentences.",
    "What does a compiler do?",
    "How many days are there in a leap year?",
    "Suggest a name for a small bakery.",
    "What is photosynthesis?",
    "Translate 'good morning' into Spanish.",
    "Write a short poem about autumn leaves.",
    "What are the primary colors?",
    "How does a refrigerator keep food cold?",
    "List three uses of a paperclip.",
    "What is the largest ocean on Earth?",
    "Explain gravity to a child.",
    "What is a healthy breakfast?",
    "Who wrote Romeo and Juliet?",
    "Give me a fun fact about octopuses.",
    "How do I boil an egg?",
    "What is the boiling point of water?",
    "Describe the taste of a lemon.",
    "Why do leaves change color in the fall?",
    "What is an algorithm?",
    "How can I improve my sleep?",
    "What is the tallest mountain in the world?",
    "Write a one-sentence story about a dragon.",
    "What is the speed of light?",
    "How do bees make honey?",
    "What are the three states of matter?",
    "Recommend a hobby for a rainy day.",
    "What is the Pythagorean theorem?",
    "Why do we have seasons?",
    "What does DNA stand for?",
    "Give me a synonym for happy.",
    "How does the internet work, briefly?",
    "What is the main language spoken in Brazil?",
    "Describe a sunset over the mountains.",
    "What is the purpose of a seatbelt?",
    "How many continents are there?",
    "What is a volcano?",
    "Write a thank-you note to a teacher.",
    "What is recycling and why does it matter?",
    "How do magnets work?",
    "Which animal is known as the king of the jungle?",
    "What is the freezing point of water in Fahrenheit?",
    "Give two reasons to learn a new language.",
    "What is a rainbow made of?",
    "How should I prepare for a job interview?",
    "What is the moon made of?",
    "Explain what a noun is.",
    "What is the chemical symbol for gold?",
    "Describe the smell of fresh bread.",
    "Why is exercise important?",
    "What is a black hole?",
    "Write a riddle about time.",
    "How do fish breathe underwater?",
    "What is the biggest animal on Earth?",
    "How do I make a cup of tea?",
    "What is the water cycle?",
)

PASSAGE = (
    "The history of the printing press begins long before Gutenberg. Craftsmen in East Asia carved whole "
    "pages into wooden blocks, inked them, and pressed paper against the surface to copy sutras, calendars "
    "and paper money. Movable type made of fired clay appeared in the eleventh century, and later printers "
    "cast characters in metal. In Europe, scribes copied books by hand in monasteries and, later, in "
    "workshops near universities, where demand for texts grew faster than copyists could satisfy it. "
    "Around 1440 a goldsmith in Mainz combined several existing ideas: a press adapted from those used for "
    "wine and paper, an oil-based ink that clung to metal, and a hand mould that cast uniform letters from "
    "an alloy of lead, tin and antimony. The result was a system in which pages could be composed, printed "
    "by the hundreds, and broken up so the letters could be used again. Within fifty years presses were "
    "running in more than two hundred European towns. Prices of books fell, literacy spread, and scholars "
    "could compare identical copies of a text, which changed how knowledge was checked and corrected. "
)


def chat_ids(tokenizer, question: str) -> List[int]:
    """Token ids of one user turn under the model's chat template, ready for the assistant's answer."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def chat_prompts(tokenizer, count: int) -> List[List[int]]:
    if count > len(QUESTIONS):
        raise ValueError(f"at most {len(QUESTIONS)} distinct chat prompts, asked for {count}")
    return [chat_ids(tokenizer, q) for q in QUESTIONS[:count]]


def long_prompt(tokenizer, num_tokens: int) -> List[int]:
    """A chat turn asking to summarise a passage, the passage cut so the ids number exactly num_tokens."""
    sentinel = "@@PASSAGE@@"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Summarise the following text.\n\n" + sentinel}], tokenize=False,
        add_generation_prompt=True)
    before, after = text.split(sentinel)
    head = tokenizer(before, add_special_tokens=False)["input_ids"]
    tail = tokenizer(after, add_special_tokens=False)["input_ids"]
    keep = num_tokens - len(head) - len(tail)
    if keep <= 0:
        raise ValueError(f"a {num_tokens}-token prompt is shorter than the chat scaffolding")
    passage = tokenizer(PASSAGE, add_special_tokens=False)["input_ids"]
    body = (passage * (keep // len(passage) + 1))[:keep]
    return head + body + tail
