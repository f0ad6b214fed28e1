"""Drive a Scheduler in-process (no subprocesses, no sockets) for tests and experiments.

    h = SchedulerHarness(model_path, max_total_tokens=256)
    h.submit("a", input_ids=[...], params={"max_new_tokens": 8, "temperature": 0})
    results = h.run_until_idle()      # rid -> SchedulerResult

Besides the results it records what the scheduler did: every forward pass it launched
(`forwards`: mode and tokens per request) and every retraction (`retractions`: who was
retracted and how far each running request had got), so tests can check scheduling decisions
that never change the outputs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Tuple

from sglang.runtime.managers.io_struct import AbortReq, BatchTokenOut, TokenizedGenerateReq
from sglang.runtime.managers.req import Req
from sglang.runtime.managers.scheduler import Scheduler
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode
from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.runtime.server_args import ServerArgs
from sglang.runtime.utils import get_tokenizer


@dataclass
class SchedulerResult:
    output_ids: List[int] = field(default_factory=list)
    finished_reason: Optional[dict] = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    messages: int = 0
    logprobs: list = field(default_factory=list)
    extra_meta: dict = field(default_factory=dict)  # e.g. "embedding" of a pooling model's request


@dataclass(frozen=True)
class ForwardRecord:
    """One forward pass launched by the scheduler."""

    step: int
    mode: ForwardMode
    num_tokens: int
    extend_seq_lens: Tuple[int, ...]  # new tokens per request (EXTEND / MIXED); empty for DECODE

    @classmethod
    def of(cls, step: int, fb: ForwardBatch) -> "ForwardRecord":
        lens = tuple(fb.extend_seq_lens_cpu or ()) if fb.forward_mode.is_extend() else ()
        return cls(step, fb.forward_mode, fb.num_tokens, lens)


@dataclass(frozen=True)
class RetractionRecord:
    """A request sent back to the waiting queue to free KV memory."""

    step: int
    rid: str
    progress: Dict[str, int]  # rid -> output tokens (in flight included) of each running request before the step
    chunk_paused: bool  # a half-prefilled request paused, rather than a running one retracted


class SchedulerHarness:
    def __init__(self, model_path: str, runner=None, **server_overrides):
        server_overrides.setdefault("device", "cpu")
        server_overrides.setdefault("random_seed", 0)
        self.server_args = ServerArgs(model_path=model_path, **server_overrides)
        self.tokenizer = get_tokenizer(model_path)
        self.scheduler = Scheduler(self.server_args, tokenizer=self.tokenizer, runner=runner)
        self.results: Dict[str, SchedulerResult] = {}
        self.forwards: List[ForwardRecord] = []
        self.retractions: List[RetractionRecord] = []
        self.steps = 0

    @property
    def runner(self):
        return self.scheduler.runner

    def submit(self, rid: str, input_ids: Optional[List[int]] = None, text: Optional[str] = None,
               params: Optional[dict] = None, **kw) -> None:
        if input_ids is None:
            input_ids = self.tokenizer.encode(text)
        sp = SamplingParams.from_dict(params or {})
        sp.normalize(self.tokenizer)
        self.results[rid] = SchedulerResult(prompt_tokens=len(input_ids))
        self.scheduler.handle(TokenizedGenerateReq(rid=rid, input_text=text, input_ids=list(input_ids),
                                                   sampling_params=sp, **kw))

    def abort(self, rid: str) -> None:
        self.scheduler.handle(AbortReq(rid))

    def step(self) -> None:
        sched = self.scheduler
        progress = {r.rid: r.num_output_tokens for r in sched.running}
        held = list(sched.running) + ([sched.chunked_req] if sched.chunked_req is not None else [])
        before = [(r, r.num_retractions) for r in held]
        with self._recording_forwards():
            messages = sched.step()
        self._note_retractions(before, progress)
        self.steps += 1
        for msg in messages:
            assert isinstance(msg, BatchTokenOut)
            for out in msg.outputs:
                res = self.results.setdefault(out.rid, SchedulerResult())
                res.output_ids.extend(out.new_ids)
                res.finished_reason = out.finished_reason
                res.cached_tokens = out.cached_tokens
                res.messages += 1
                res.extra_meta.update(out.extra_meta)
                if out.logprobs is not None:
                    res.logprobs.append(out.logprobs)

    @contextmanager
    def _recording_forwards(self) -> Iterator[None]:
        """Record the step's forward passes. The runner's `forward` is wrapped only while this
        harness steps, so a runner shared with another harness is left as it was."""
        runner = self.scheduler.runner
        own_patch = vars(runner).get("forward")  # a test's own wrapper, called through and restored
        inner = runner.forward

        def forward(fb: ForwardBatch):
            self.forwards.append(ForwardRecord.of(self.steps, fb))
            return inner(fb)

        runner.forward = forward
        try:
            yield
        finally:
            if own_patch is None:
                del runner.forward
            else:
                runner.forward = own_patch

    def _note_retractions(self, before: List[Tuple[Req, int]], progress: Dict[str, int]) -> None:
        for req, count in before:
            if req.num_retractions > count:
                self.retractions.append(RetractionRecord(self.steps, req.rid, dict(progress),
                                                         chunk_paused=req.rid not in progress))

    def extend_forwards(self) -> List[ForwardRecord]:
        return [f for f in self.forwards if f.mode.is_extend()]

    def run_until_idle(self, max_steps: int = 100_000, after_step: Optional[Callable[["SchedulerHarness"], None]] = None
                       ) -> Dict[str, SchedulerResult]:
        steps = 0
        while self.scheduler.has_work() or self.scheduler.outbox:
            self.step()
            if after_step is not None:
                after_step(self)
            steps += 1
            if steps > max_steps:
                raise RuntimeError(f"scheduler did not become idle within {max_steps} steps")
        return self.results

    def live_reqs(self) -> list:
        return self.scheduler.live_reqs()
