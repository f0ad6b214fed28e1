"""Extraction with constraints: a regex-shaped JSON record and a JSON-schema one."""

import json

from common import parse_args, start_backend

import sglang as sgl

PERSON_REGEX = (r'\{\n  "name": "[A-Z][a-z]{1,12}",\n  "age": [1-9][0-9]?,\n'
                r'  "job": "[a-z]{2,16}"\n\}')
PERSON_SCHEMA = {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0,
                                                         "maximum": 120}},
    "required": ["name", "age"], "additionalProperties": False}


@sgl.function
def extract(s, text):
    s += "Text: " + text + "\nThe person as JSON:\n"
    s += sgl.gen("person", max_tokens=64, regex=PERSON_REGEX)
    s += "\nAgain, by schema:\n" + sgl.gen("by_schema", max_tokens=64, json_schema=PERSON_SCHEMA)


def main() -> None:
    backend = start_backend(parse_args(__doc__))
    try:
        state = extract.run(text="Alice is a 31-year-old pilot from Lyon.", backend=backend,
                            temperature=0)
        print("regex:", json.loads(state["person"]))
        print("schema:", json.loads(state["by_schema"]))
    finally:
        backend.shutdown()


if __name__ == "__main__":
    main()
