"""Built-in chat templates and resolution of `--chat-template` (a name, a .jinja file, or Jinja).

The templates are Jinja sources in the Hugging Face convention (variables `messages`,
`add_generation_prompt`, `bos_token`, `eos_token`), rendered by the tokenizer's own
`apply_chat_template`, so named and model-provided templates take exactly the same path.
Each renders every message's content verbatim, which is what `continue_final_message` needs to
locate the final message in the output.
"""

from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Mapping, Optional

_CHATML = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Qwen's chat models are ChatML with a default system prompt when none is given.
_QWEN = (
    "{%- if messages and messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}" + _CHATML
)

_LLAMA3 = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}"
)

# Mistral instruct has no system role: a system message is prefixed to the next user turn.
_MISTRAL = (
    "{{- bos_token }}{%- set ns = namespace(system='') %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'system' %}{%- set ns.system = message['content'] + '\\n\\n' %}"
    "{%- elif message['role'] == 'assistant' %}{{- message['content'] + eos_token }}"
    "{%- else %}{{- '[INST] ' + ns.system + message['content'] + ' [/INST]' }}{%- set ns.system = '' %}"
    "{%- endif %}"
    "{%- endfor %}"
)

# Gemma instruct knows two roles, 'user' and 'model'.
_GEMMA_IT = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{- '<start_of_turn>' + role + '\\n' + message['content'] + '<end_of_turn>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<start_of_turn>model\\n' }}{%- endif %}"
)

# For checkpoints without a template: plain "role: content" lines.
_DEFAULT = (
    "{%- for message in messages %}{{- message['role'] + ': ' + message['content'] + '\\n' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- 'assistant:' }}{%- endif %}"
)

NAMED_TEMPLATES: Mapping[str, str] = MappingProxyType({
    "chatml": _CHATML,
    "qwen": _QWEN,
    "llama-3-instruct": _LLAMA3,
    "mistral": _MISTRAL,
    "gemma-it": _GEMMA_IT,
    "default": _DEFAULT,
})


def resolve_chat_template(spec: Optional[str]) -> Optional[str]:
    """Jinja source for `--chat-template`, or None when unset (use the tokenizer's)."""
    if spec is None:
        return None
    if spec in NAMED_TEMPLATES:
        return NAMED_TEMPLATES[spec]
    if os.path.isfile(spec):
        with open(spec, encoding="utf-8") as f:
            return f.read()
    if "{{" in spec or "{%" in spec:
        return spec
    if spec.endswith((".jinja", ".j2")):
        raise ValueError(f"--chat-template file {spec!r} does not exist")
    raise ValueError(f"--chat-template {spec!r} is not a built-in name ({', '.join(NAMED_TEMPLATES)}), "
                     f"an existing .jinja file, or a Jinja template string")


def server_chat_template(spec: Optional[str], tokenizer: Any) -> Optional[str]:
    """The template the server renders with: --chat-template, else the tokenizer's own (None),
    else the plain 'default' one for checkpoints that ship none."""
    resolved = resolve_chat_template(spec)
    if resolved is not None or tokenizer is None:
        return resolved
    if getattr(tokenizer, "chat_template", None):
        return None
    return NAMED_TEMPLATES["default"]
