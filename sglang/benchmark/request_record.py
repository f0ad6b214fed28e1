"""What one benchmark request asks for and what was measured while it streamed.

Timing is recorded raw (chunk arrival times and how many tokens each chunk brought) and turned
into TTFT / inter-token latencies afterwards, so the hot streaming loop does no extra work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union


@dataclass
class RequestInput:
    prompt: Union[str, List[int]]  # text, or token ids for the random-ids dataset
    prompt_len: int  # tokens in the dataset prompt (what was asked, before any chat template)
    output_len: int  # max new tokens asked
    model: str = ""
    ignore_eos: bool = True
    extra_body: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Chunk:
    """One streamed event that brought output: when it arrived and how many tokens it carried.

    `tokens` is None when the server does not report token counts per chunk (OpenAI deltas
    without continuous usage); such chunks count as one token each.
    """

    time: float
    tokens: Optional[int]


@dataclass
class RequestOutput:
    success: bool = False
    error: str = ""
    prompt_len: int = 0
    asked_output_len: int = 0
    generated_text: str = ""
    output_len: int = 0  # output tokens: server count if reported, else re-tokenized text
    server_output_len: Optional[int] = None  # completion_tokens / usage, when the server sent it
    start_time: float = 0.0
    latency: float = 0.0  # end to end, seconds
    ttft: float = 0.0
    itl: List[float] = field(default_factory=list)
    chunks: List[Chunk] = field(default_factory=list)

    @property
    def tpot(self) -> Optional[float]:
        """Time per output token after the first; None when there is no second token."""
        if self.output_len <= 1:
            return None
        return (self.latency - self.ttft) / (self.output_len - 1)


def split_chunk_latencies(chunks: List[Chunk], start_time: float) -> tuple[float, List[float]]:
    """TTFT and inter-token latencies from chunk arrivals.

    The gap before a chunk that carried k tokens is divided evenly into k latencies, so a
    multi-token chunk (stream_interval > 1, held-back partial UTF-8) does not look like one slow
    token followed by free ones. Tokens that came with the first chunk have no measurable gap.
    """
    if not chunks:
        return 0.0, []
    ttft = chunks[0].time - start_time
    itl: List[float] = []
    for prev, cur in zip(chunks, chunks[1:]):
        k = max(cur.tokens if cur.tokens is not None else 1, 1)
        itl.extend([(cur.time - prev.time) / k] * k)
    return ttft, itl
