"""Drive a Scheduler in-process (no subprocesses, no sockets) for tests and experiments.

    h = SchedulerHarness(model_path, max_total_tokens=256)
    h.submit("a", input_ids=[...], params={"max_new_tokens": 8, "temperature": 0})
    results = h.run_until_idle()      # rid -> SchedulerResult
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from sglang.runtime.managers.io_struct import AbortReq, BatchTokenOut, TokenizedGenerateReq
from sglang.runtime.managers.scheduler import Scheduler
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


class SchedulerHarness:
    def __init__(self, model_path: str, runner=None, **server_overrides):
        server_overrides.setdefault("device", "cpu")
        server_overrides.setdefault("random_seed", 0)
        self.server_args = ServerArgs(model_path=model_path, **server_overrides)
        self.tokenizer = get_tokenizer(model_path)
        self.scheduler = Scheduler(self.server_args, tokenizer=self.tokenizer, runner=runner)
        self.results: Dict[str, SchedulerResult] = {}

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
        for msg in self.scheduler.step():
            assert isinstance(msg, BatchTokenOut)
            for out in msg.outputs:
                res = self.results.setdefault(out.rid, SchedulerResult())
                res.output_ids.extend(out.new_ids)
                res.finished_reason = out.finished_reason
                res.cached_tokens = out.cached_tokens
                res.messages += 1
                if out.logprobs is not None:
                    res.logprobs.append(out.logprobs)

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
