"""Per-choice bookkeeping of an OpenAI stream: the runtime yields cumulative outputs, OpenAI
chunks carry deltas; each choice gets exactly one chunk with a finish_reason."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

from sglang.runtime.entrypoints.openai.errors import APIError, from_abort_reason


class StreamState:
    def __init__(self) -> None:
        self._text_sent: Dict[int, int] = {}  # index -> characters of output text sent
        self._logprobs_sent: Dict[int, int] = {}  # index -> output logprob entries sent
        self._offset: Dict[int, int] = {}  # index -> text_offset of the next logprob token
        self._final: Dict[int, Dict[str, Any]] = {}  # index -> final cumulative output

    def is_first(self, index: int) -> bool:
        return index not in self._text_sent

    def text_delta(self, index: int, text: str) -> str:
        sent = self._text_sent.get(index, 0)
        self._text_sent[index] = max(sent, len(text))
        return text[sent:]

    def logprobs_sent(self, index: int) -> int:
        return self._logprobs_sent.get(index, 0)

    def text_offset(self, index: int) -> int:
        return self._offset.get(index, 0)

    def advance_logprobs(self, index: int, total_entries: int, text_len: int) -> None:
        self._logprobs_sent[index] = total_entries
        self._offset[index] = self._offset.get(index, 0) + text_len

    def finish(self, index: int, out: Dict[str, Any]) -> None:
        self._final[index] = out

    def is_finished(self, index: int) -> bool:
        return index in self._final

    def final_outputs(self) -> List[Dict[str, Any]]:
        return [self._final[i] for i in sorted(self._final)]

    @staticmethod
    def abort_error(out: Dict[str, Any]) -> Optional[APIError]:
        return from_abort_reason(out["meta_info"].get("finish_reason"))
