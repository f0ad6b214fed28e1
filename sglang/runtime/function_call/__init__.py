"""Tool (function) calls in model output: one parser per model family's call format.

`registry.py` names the formats (`--tool-call-parser`) and imports a format only when chosen;
`base.py` defines what a format provides (a scan of partial or complete output, the call layout
the constrained grammar is built from, a system prompt for templates that ignore tools);
`streaming.py` turns successive scans into OpenAI's incremental `delta.tool_calls`.
"""
