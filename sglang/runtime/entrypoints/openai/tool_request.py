"""`tools` / `tool_choice` / `parallel_tool_calls` of a chat request -> a ToolPlan: the validated
functions, the call format, how the prompt shows them, and the grammar constraining the reply."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional

from jsonschema import SchemaError
from jsonschema.validators import validator_for

from sglang.runtime.entrypoints.openai.errors import bad_request
from sglang.runtime.entrypoints.openai.protocol import ChatCompletionRequest
from sglang.runtime.function_call.base import ToolCallFormat
from sglang.runtime.function_call.grammar import calls_ebnf, triggered_ebnf
from sglang.runtime.function_call.registry import detect_format, get_format
from sglang.runtime.function_call.types import ToolCall

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CHOICES = ("none", "auto", "required")


@dataclass
class ToolPlan:
    fmt: ToolCallFormat
    functions: List[Dict[str, Any]]  # name, description, parameters, strict
    names: FrozenSet[str]
    choice: str  # "auto" | "required" | "named"
    parallel: bool
    template_tools: bool  # the chat template renders `tools` itself
    template_calls: bool  # ... and assistant `tool_calls`
    grammar: Optional[Dict[str, str]] = None  # sampling-param constraint, e.g. {"ebnf": ...}

    def template_tool_list(self) -> List[Dict[str, Any]]:
        return [{"type": "function", "function": f} for f in self.functions]


def plan_tools(req: ChatCompletionRequest, parser: Optional[str], template: str,
               grammar_backend: str) -> Optional[ToolPlan]:
    """None when the request makes no tool calls possible (no tools, or tool_choice 'none')."""
    choice, named = _choice(req.tool_choice)
    if not req.tools:
        if choice in ("required", "named"):
            raise bad_request(f"tool_choice {req.tool_choice!r} needs tools", param="tool_choice")
        return None
    functions = [_function(tool, i) for i, tool in enumerate(req.tools)]
    names = [f["name"] for f in functions]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise bad_request(f"tools declare the function {dup!r} more than once", param="tools")
    if named is not None and named not in names:
        raise bad_request(f"tool_choice names the function {named!r}, but tools declare only "
                          f"{', '.join(map(repr, names))}", param="tool_choice")
    if choice == "none":
        return None
    fmt = _format(parser, template)
    plan = ToolPlan(fmt, functions, frozenset(names), choice, req.parallel_tool_calls is not False,
                    "tools" in template, "tool_calls" in template)
    if grammar_backend == "xgrammar":
        picked = [f for f in functions if f["name"] == named] if named is not None else functions
        plan.grammar = _grammar(plan, picked, req)
    return plan


def _choice(value: Any) -> tuple:
    if value is None:
        return "auto", None
    if isinstance(value, str):
        if value not in _CHOICES:
            raise bad_request(f"tool_choice must be one of {', '.join(_CHOICES)} or "
                              f"{{\"type\": \"function\", \"function\": {{\"name\": ...}}}}, got {value!r}",
                              param="tool_choice")
        return value, None
    name = value.get("function", {}).get("name") if isinstance(value.get("function"), dict) else None
    if value.get("type") != "function" or not isinstance(name, str):
        raise bad_request('a tool_choice object must be {"type": "function", "function": {"name": ...}}',
                          param="tool_choice")
    return "named", name


def _function(tool: Dict[str, Any], index: int) -> Dict[str, Any]:
    param = f"tools.{index}"
    if tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
        raise bad_request('each tool must be {"type": "function", "function": {"name": ..., "parameters": ...}}',
                          param=param)
    fn = tool["function"]
    name = fn.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise bad_request(f"tool function names must be 1-64 letters, digits, '_', '-' or '.', got {name!r}",
                          param=f"{param}.function.name")
    params = fn.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(params, dict):
        raise bad_request(f"tools[{index}].function.parameters must be a JSON Schema object",
                          param=f"{param}.function.parameters")
    try:
        validator_for(params).check_schema(params)
    except SchemaError as exc:
        raise bad_request(f"tools[{index}].function.parameters ({name}) is not a valid JSON Schema: "
                          f"{exc.message}", param=f"{param}.function.parameters") from None
    if params.get("type", "object") != "object":
        raise bad_request(f"tools[{index}].function.parameters ({name}) must describe an object "
                          f"(\"type\": \"object\"), got type {params.get('type')!r}",
                          param=f"{param}.function.parameters")
    out = {"name": name, "parameters": params}
    for key in ("description", "strict"):
        if fn.get(key) is not None:
            out[key] = fn[key]
    return out


def _format(parser: Optional[str], template: str) -> ToolCallFormat:
    detected = detect_format(template)
    if parser is None:
        if detected is None:
            raise bad_request("this model's chat template does not describe tool calls, so the server cannot "
                              "tell their format; start it with --tool-call-parser (one of llama3, qwen25, "
                              "mistral, hermes, pythonic, deepseekv3)", param="tools")
        return detected
    fmt = get_format(parser)
    if detected is not None and detected.family != fmt.family:
        raise bad_request(f"--tool-call-parser {parser} does not match the chat template, which writes "
                          f"{detected.name} tool calls; restart the server with --tool-call-parser "
                          f"{detected.name} (or without it)", param="tools")
    return fmt


def _grammar(plan: ToolPlan, picked: List[Dict[str, Any]], req: ChatCompletionRequest) -> Optional[Dict[str, str]]:
    layout = plan.fmt.layout()
    if plan.choice == "auto" and not _auto_constrained(req):
        return None
    parallel = plan.parallel and plan.choice == "required"
    try:
        if plan.choice == "auto":
            ebnf = (triggered_ebnf(layout, picked, plan.parallel) if layout is not None
                    else plan.fmt.auto_grammar(picked, plan.parallel))
        elif layout is None:
            ebnf = plan.fmt.calls_grammar(picked, parallel)
        else:
            ebnf = calls_ebnf(layout, picked, parallel)
    except (RuntimeError, ValueError) as exc:
        raise bad_request(f"the tools' parameter schemas cannot be enforced: {exc}", param="tools") from None
    return {"ebnf": ebnf} if ebnf is not None else None


def _auto_constrained(req: ChatCompletionRequest) -> bool:
    """`auto` replies are free text with constrained calls, unless the client asked for its own
    constraint (then its grammar wins and calls are parsed from the text)."""
    return not (req.response_format or req.regex or req.json_schema or req.ebnf)


def call_dicts(calls: List[Any]) -> List[Dict[str, Any]]:
    """Assistant `tool_calls` of the history with arguments as objects, as HF templates expect."""
    out = []
    for call in calls:
        fn = dict(call.get("function") or {})
        args = fn.get("arguments")
        if isinstance(args, str):
            try:
                fn["arguments"] = json.loads(args)
            except json.JSONDecodeError:
                pass
        out.append({**call, "function": fn})
    return out


def with_tools(messages: List[Dict[str, Any]], plan: Optional[ToolPlan]) -> List[Dict[str, Any]]:
    """Messages for a template: tools described in the system prompt and calls written into the
    assistant turns, where the template does not render them itself."""
    out = []
    for msg in messages:
        calls = msg.get("tool_calls")
        if calls is not None:
            if plan is None or plan.template_calls:
                msg = {**msg, "tool_calls": call_dicts(calls)}
            else:
                msg = {k: v for k, v in msg.items() if k != "tool_calls"}
                msg["content"] = (msg["content"] + "\n" if msg["content"] else "") + plan.fmt.render_calls(
                    [ToolCall(c.get("function", {}).get("name", ""), _arguments_text(c)) for c in calls])
        out.append(msg)
    if plan is None or plan.template_tools:
        return out
    prompt = plan.fmt.system_prompt(plan.functions)
    if out and out[0]["role"] == "system" and isinstance(out[0]["content"], str):
        return [{**out[0], "content": out[0]["content"] + "\n\n" + prompt}] + out[1:]
    return [{"role": "system", "content": prompt}] + out


def _arguments_text(call: Dict[str, Any]) -> str:
    args = (call.get("function") or {}).get("arguments", "{}")
    return args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
