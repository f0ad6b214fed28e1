"""Built-in training text for the tiny BPE tokenizer.

Written for this project. It is varied on purpose (prose, dialogue, code, JSON, numbers,
punctuation, accented words, CJK and emoji) so the learned merges cover what tests send and
byte fallback is exercised for the rest. Nothing is downloaded.
"""

from __future__ import annotations

CORPUS_PARTS: tuple[str, ...] = (
    """The quick brown fox jumps over the lazy dog. A small model can still learn a few
words, and a tokenizer trained on this page will split most English sentences into short
pieces. We write tests that start a server, send a prompt, and check that the answer comes
back in order. When the cache is warm, the second request should be faster than the first.""",
    """Once upon a time there was a little robot who lived in a lighthouse by the sea. Every
evening it climbed the stairs, counted the steps (there were 128 of them), and turned on the
lamp. Ships passed in the night; the robot waved at each one. "Hello!" it said. "Safe travels,
and come back soon." Nobody answered, but the robot did not mind.""",
    """Question: What is the capital of France?
Answer: The capital of France is Paris.
Question: How many days are in a leap year?
Answer: A leap year has 366 days.
Question: What is 12 times 12?
Answer: 12 * 12 = 144.
Question: Name three primary colors.
Answer: Red, yellow, and blue.""",
    """User: Can you help me plan a trip to Japan?
Assistant: Of course! Spring is a lovely season: the cherry trees bloom in late March and
early April. You could start in Tokyo, take the train to Kyoto, and finish in Osaka.
User: What should I eat?
Assistant: Try ramen, sushi, tempura, and okonomiyaki. In Kyoto, visit a tea house.""",
    """def fibonacci(n: int) -> list[int]:
    sequence = [0, 1]
    while len(sequence) < n:
        sequence.append(sequence[-1] + sequence[-2])
    return sequence[:n]

for i in range(10):
    print(i, fibonacci(i))
""",
    """{"name": "Alice", "age": 31, "city": "London", "skills": ["python", "sql", "cooking"]}
{"name": "Bob", "age": 27, "city": "Berlin", "active": true, "score": 98.5}
{"id": 42, "title": "Meeting notes", "tags": [], "owner": null, "done": false}
{"answer": "yes", "confidence": 0.87, "reasons": ["clear", "short", "correct"]}""",
    """Numbers appear everywhere: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 42, 100, 256, 1024, 2048,
3.14159, 2.71828, -17, +5, 1,000,000, 50%, $19.99, 7:30 pm, 2024-05-17, v1.2.3, #1, 3/4.
The train leaves at 08:15 and arrives at 11:45, a trip of 3 hours and 30 minutes.""",
    """Punctuation matters: commas, periods. Question marks? Exclamation points! Colons: and
semicolons; dashes - and -- even em dashes; (parentheses), [brackets], {braces}, <angles>,
"double quotes", 'single quotes', `backticks`, slashes / and \\ backslashes, @mentions,
#hashtags, a & b, x | y, ~tilde~, ^caret^, under_score, and ellipses...""",
    """Le café est ouvert tous les jours. Une idée naïve peut devenir une grande découverte.
Der Bär schläft im Wald, und die Vögel singen früh am Morgen. El niño comió una manzana
en la mañana. São Paulo é uma cidade enorme. Smörgåsbord, crème brûlée, jalapeño, façade.""",
    """日本語 is the Japanese language; 東京 is Tokyo and 京都 is Kyoto. 中文 means Chinese.
한국어 is Korean. Русский язык is Russian. Ελληνικά is Greek. العربية is Arabic.
Emoji are bytes too: 😀 🎉 🚀 ❤️ 👍 🌍 🍕 ☕ ✅ ⭐.""",
    """Recipe for pancakes: mix 2 cups of flour, 2 eggs, 1 cup of milk, a pinch of salt and
a spoon of sugar. Heat a pan, pour a little batter, wait for bubbles, then flip. Serve warm
with honey, berries, or maple syrup. Makes about 8 pancakes.""",
    """The weather today is sunny with a light breeze. Tomorrow it will rain in the morning
and clear up by the afternoon. The temperature will rise to 24 degrees and fall to 12 at
night. Remember your umbrella, your coat, and your keys before you leave the house.""",
    """Science notes: water boils at 100 degrees Celsius at sea level. Light travels about
300,000 kilometers per second. The Earth orbits the Sun once every 365.25 days, and the Moon
orbits the Earth about every 27 days. Plants turn sunlight, water and air into sugar.""",
    """A list of animals: cat, dog, horse, cow, sheep, goat, pig, chicken, duck, rabbit,
mouse, lion, tiger, bear, wolf, fox, deer, owl, eagle, whale, dolphin, shark, octopus.
A list of colors: red, orange, yellow, green, blue, indigo, violet, black, white, gray.""",
    """SELECT name, COUNT(*) AS total FROM orders WHERE status = 'shipped' GROUP BY name
ORDER BY total DESC LIMIT 10;
<html><body><h1>Hello, world</h1><p class="note">It works.</p></body></html>
$ git status && python -m pytest -q tests/ --maxfail=1""",
    """Dear team, thank you for your hard work this week. The release is ready, the tests
pass, and the documentation has been updated. Please review the changes before Friday.
Best regards, Maria. P.S. Lunch is on me next Monday!""",
    """First, read the question carefully. Second, think about what you already know.
Third, write down a short plan. Finally, check your answer and explain your reasoning in
one or two sentences. Good answers are clear, correct, and kind.""",
)


def training_corpus() -> list[str]:
    """Return the corpus as a fresh list of documents (callers may not mutate shared state)."""
    return list(CORPUS_PARTS)
