"""Validity of constrained tool calls through the `openai` client against a running server.

    python benchmarks/constrained/bench_tool_calls.py --base-url http://127.0.0.1:30000 \
        [--samples 200] [--batch 50] [--max-tokens 400]

For tool_choice "required" and a named function, streamed and not, draws --samples replies at
temperature 1.0 (n = --batch per request) and counts the replies whose finish_reason is
"tool_calls" and whose every call names a declared tool with arguments that validate against
its schema. Prints one JSON line per mode with the counts and the seconds taken.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Dict, List, Tuple

import openai
from jsonschema import ValidationError, validate

WEATHER = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 16},
                                            "days": {"type": "integer", "minimum": 1, "maximum": 7},
                                            "unit": {"enum": ["c", "f"]}},
           "required": ["city", "days", "unit"]}
TIME = {"type": "object", "properties": {"tz": {"type": "string", "maxLength": 8}}, "required": ["tz"]}
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME}
TOOLS = [{"type": "function", "function": {"name": n, "description": f"{n} tool", "parameters": s}}
         for n, s in SCHEMAS.items()]
MESSAGES = [{"role": "user", "content": "What is the weather in Paris for the next 3 days?"}]
CHOICES = {"required": "required", "named": {"type": "function", "function": {"name": "get_weather"}}}


def valid(calls: List[Tuple[str, str]], finish: str, only: str) -> bool:
    if finish != "tool_calls" or not calls:
        return False
    try:
        for name, args in calls:
            if name not in SCHEMAS or (only and name != only):
                return False
            validate(json.loads(args), SCHEMAS[name])
    except (ValueError, ValidationError):
        return False
    return True


def replies(client: openai.OpenAI, model: str, choice: str, stream: bool, n: int,
            max_tokens: int) -> List[Tuple[List[Tuple[str, str]], str]]:
    kwargs = dict(model=model, messages=MESSAGES, tools=TOOLS, tool_choice=CHOICES[choice], n=n,
                  temperature=1.0, max_tokens=max_tokens)
    if not stream:
        reply = client.chat.completions.create(**kwargs)
        return [([(c.function.name, c.function.arguments) for c in ch.message.tool_calls or []], ch.finish_reason)
                for ch in reply.choices]
    calls: Dict[int, Dict[int, List[str]]] = {i: {} for i in range(n)}
    finish: Dict[int, str] = {}
    for chunk in client.chat.completions.create(stream=True, **kwargs):
        for ch in chunk.choices:
            finish[ch.index] = ch.finish_reason or finish.get(ch.index)
            for d in ch.delta.tool_calls or []:
                entry = calls[ch.index].setdefault(d.index, [d.function.name or "", ""])
                entry[1] += d.function.arguments or ""
    return [([tuple(calls[i][k]) for k in sorted(calls[i])], finish.get(i)) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:30000")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=400)
    args = parser.parse_args()
    client = openai.OpenAI(base_url=args.base_url + "/v1", api_key="unused", max_retries=0, timeout=600)
    model = client.models.list().data[0].id
    for choice in CHOICES:
        for stream in (False, True):
            start, ok, total = time.perf_counter(), 0, 0
            while total < args.samples:
                n = min(args.batch, args.samples - total)
                got = replies(client, model, choice, stream, n, args.max_tokens)
                for calls, finish in got:
                    if valid(calls, finish, "get_weather" if choice == "named" else ""):
                        ok += 1
                    else:  # what was wrong, for diagnosis
                        print(json.dumps({"invalid": calls, "finish_reason": finish}), file=sys.stderr)
                total += n
            print(json.dumps({"tool_choice": choice, "stream": stream, "samples": total, "valid": ok,
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)


if __name__ == "__main__":
    main()
