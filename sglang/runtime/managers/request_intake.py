"""Turn an incoming TokenizedGenerateReq into a scheduler Req, rejecting what cannot run.

The tokenizer manager validates first (so HTTP callers get a 400 before anything is queued);
this is the scheduler's own guard, since it alone knows the pool and queue sizes.
"""

from __future__ import annotations

import random

from sglang.runtime.managers.io_struct import TokenizedGenerateReq, finish_abort
from sglang.runtime.managers.req import Req


class RequestIntake:
    def __init__(self, server_args, runner, tokenizer=None):
        self.server_args = server_args
        self.runner = runner
        self.tokenizer = tokenizer
        self.rng = random.Random(server_args.random_seed)
        self.eos_ids = runner.eos_token_ids()
        self.vocab_size = runner.vocab_size()

    def make_req(self, msg: TokenizedGenerateReq, queue_len: int) -> Req:
        media_error = self._import_media(msg)
        params = msg.sampling_params
        seed = params.seed if params.seed is not None else self.rng.randrange(1 << 31)
        req = Req(
            rid=msg.rid,
            origin_input_ids=msg.input_ids,
            sampling_params=params,
            eos_token_ids=self.eos_ids,
            seed=seed,
            return_logprob=msg.return_logprob,
            logprob_start_len=msg.logprob_start_len,
            top_logprobs_num=msg.top_logprobs_num,
            token_ids_logprob=msg.token_ids_logprob,
            stream=msg.stream,
            input_text=msg.input_text,
            mm_inputs=msg.mm_inputs,
            lora_name=msg.lora_path,
        )
        error = media_error or self._check(msg, queue_len)
        if error is not None:
            message, status = error
            err_type = {503: "ServiceUnavailableError", 500: "InternalServerError"}.get(status, "BadRequestError")
            req.finished_reason = finish_abort(message, status_code=status, err_type=err_type)
        return req

    @staticmethod
    def _import_media(msg: TokenizedGenerateReq):
        """Take the request's image tensors out of shared memory (first: the segments are ours to
        unlink whatever happens to the request next)."""
        if msg.mm_inputs is None:
            return None
        try:
            msg.mm_inputs.imported()
        except (OSError, ValueError) as exc:
            msg.mm_inputs = None
            return f"the request's image data could not be received ({exc}); send it again", 500
        return None

    def _check(self, msg: TokenizedGenerateReq, queue_len: int):
        n = len(msg.input_ids)
        ctx = self.runner.context_len
        limit = self.server_args.max_queued_requests
        if limit is not None and queue_len >= limit:
            return (f"the queue is full: {queue_len} requests wait for a running slot "
                    f"(--max-queued-requests {limit}); try again later"), 503
        if n == 0:
            return "the prompt is empty: give text or at least one input id", 400
        lora_error = self._check_lora(msg.lora_path)
        if lora_error is not None:
            return lora_error, 400
        if n >= ctx:
            return (f"the prompt has {n} tokens but the context length is {ctx}; "
                    f"shorten the prompt (it must leave room for at least one new token)"), 400
        if n + 1 > self.runner.max_total_num_tokens:
            return (f"the prompt has {n} tokens but the KV cache holds {self.runner.max_total_num_tokens}; "
                    f"raise --max-total-tokens"), 400
        if min(msg.input_ids) < 0 or max(msg.input_ids) >= self.vocab_size:
            return f"input_ids must be in [0, {self.vocab_size}); got a value outside that range", 400
        try:
            msg.sampling_params.verify(self.vocab_size)
        except ValueError as exc:
            return str(exc), 400
        return None

    def _check_lora(self, name):
        if name is None:
            return None
        lora = getattr(self.runner, "lora", None)
        if lora is None:
            return "lora_path was given but the server serves no LoRA adapters (start it with --enable-lora)"
        if name not in lora.adapters:
            return f"LoRA adapter {name!r} is not loaded; loaded adapters: {lora.names()}"
        return None
