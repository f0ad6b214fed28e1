"""Per-choice bookkeeping of an OpenAI stream: the runtime yields cumulative outputs, OpenAI
chunks carry deltas; each choice gets exactly one chunk with a finish_reason."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from sglang.runtime.entrypoints.openai.errors import APIError, from_abort_reason
from sglang.runtime.entrypoints.openai.text_offsets import TextOffsets


class StreamState:
    def __init__(self) -> None:
        self._text_sent: Dict[int, int] = {}  # index -> characters of output text sent
        self._logprobs_sent: Dict[int, int] = {}  # index -> output logprob entries sent
        self._offsets: Dict[int, TextOffsets] = {}  # index -> text_offset of its next logprob tokens
        self._final: Dict[int, Dict[str, Any]] = {}  # index -> final cumulative output

    def is_first(self, index: int) -> bool:
        return index not in self._text_sent

    def text_delta(self, index: int, text: str) -> str:
        sent = self._text_sent.get(index, 0)
        self._text_sent[index] = max(sent, len(text))
        return text[sent:]

    def text_sent(self, index: int) -> int:
        return self._text_sent.get(index, 0)

    def logprobs_sent(self, index: int) -> int:
        return self._logprobs_sent.get(index, 0)

    def offsets(self, index: int, make: Callable[[], TextOffsets]) -> TextOffsets:
        if index not in self._offsets:
            self._offsets[index] = make()
        return self._offsets[index]

    def advance_logprobs(self, index: int, total_entries: int) -> None:
        self._logprobs_sent[index] = total_entries

    def finish(self, index: int, out: Dict[str, Any]) -> None:
        self._final[index] = out

    def is_finished(self, index: int) -> bool:
        return index in self._final

    def final_outputs(self) -> List[Dict[str, Any]]:
        return [self._final[i] for i in sorted(self._final)]

    @staticmethod
    def abort_error(out: Dict[str, Any]) -> Optional[APIError]:
        return from_abort_reason(out["meta_info"].get("finish_reason"))
