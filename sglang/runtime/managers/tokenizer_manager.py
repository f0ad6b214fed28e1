"""The tokenizer manager: lives in the caller's process (Engine or HTTP server), on one asyncio loop.

It validates and tokenizes requests (in a thread pool, off the loop: see request_tokenizer), sends
them to the scheduler, and gathers the detokenizer's incremental outputs into upstream-shaped
result dicts. It also watches the child processes: if one dies, or the scheduler makes no
progress for --watchdog-timeout seconds with requests pending (scheduler_watchdog), every pending
request fails at once with a message saying which, and new calls fail immediately instead of
hanging.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Union

import zmq
import zmq.asyncio

from sglang.runtime.entrypoints.openai.chat_templates import resolve_chat_template
from sglang.runtime.managers.generate_input import GenerateReqInput, SingleGenerateInput
from sglang.runtime.managers.embedding_requests import wrong_model_kind_message
from sglang.runtime.managers.kv_concat import common_prefix_len as _common_prefix_len
from sglang.runtime.managers.io_struct import (
    AbortReq,
    CONTROL_REPLIES,
    BatchStrOut,
    ConcatAppendReply,
    ConcatAppendReq,
    FlushCacheReply,
    FlushCacheReq,
    LoadLoraReq,
    LoraReply,
    ServerStateReply,
    ServerStateReq,
    StrOut,
    TokenizedGenerateReq,
    UnloadLoraReq,
)
from sglang.runtime.lora.names import LoraNames
from sglang.runtime.managers.child_process import Heartbeat
from sglang.runtime.managers.dp_router import ReplicaRouter, merge_replica_states
from sglang.runtime.managers.request_state import ReqState
from sglang.runtime.managers.scheduler_watchdog import SchedulerHangWatch
from sglang.runtime.multimodal.registry import load_multimodal_processor
from sglang.runtime.multimodal.shared_tensor import unlink_leftovers
from sglang.runtime.managers.request_tokenizer import RequestTokenizer
from sglang.runtime.sampling.sampling_params import SamplingParams
from sglang.runtime.server_args import PortArgs, ServerArgs
from sglang.runtime.utils import load_server_tokenizer

logger = logging.getLogger(__name__)

_WATCHDOG_PERIOD_S = 0.25

PromptLike = Union[str, List[int]]
MAX_CONCAT_CHILDREN = 1024  # bounds the prefill requests one concat_and_append call can queue


class EngineDeadError(RuntimeError):
    pass


class TokenizerManager:
    def __init__(self, server_args: ServerArgs, port_args: PortArgs, scheduler_infos: List[dict], procs: list,
                 heartbeats: Sequence[Heartbeat] = ()):
        """`scheduler_infos` and `heartbeats`: one per data-parallel replica (its rank 0)."""
        self.server_args = server_args
        self.port_args = port_args
        self.procs = procs
        self.hang_watches = [SchedulerHangWatch(hb, server_args.watchdog_timeout) for hb in heartbeats]
        self.router = ReplicaRouter(len(scheduler_infos), server_args.load_balance_method)
        self.replica_of: Dict[str, int] = {}  # rid -> the replica it was sent to
        self._pinned: Dict[str, int] = {}  # rid -> replica, for n > 1 samples of a prefilled prompt
        scheduler_info = scheduler_infos[0]  # replicas are alike; capacities are per replica
        self.tokenizer = load_server_tokenizer(server_args)
        self.context_len: int = scheduler_info["context_len"]
        self.vocab_size: int = scheduler_info["vocab_size"]
        self.max_total_num_tokens: int = scheduler_info["max_total_num_tokens"]
        self.max_running_requests: int = scheduler_info["max_running_requests"]
        self.eos_token_ids: List[int] = scheduler_info.get("eos_token_ids", [])
        self.architecture: str = scheduler_info.get("architecture", "")
        # False for embedding / reward models: they answer encode requests only.
        self.is_generation: bool = scheduler_info.get("is_generation", True)
        self.mm_processor = self._load_mm_processor()
        self.lora = LoraNames(server_args)  # adapters the requests may name (runtime/lora/)
        self.request_tokenizer = RequestTokenizer(self.tokenizer, self.context_len, self.vocab_size,
                                                  mm_processor=self.mm_processor, media=self._media_loader())
        self.states: Dict[str, ReqState] = {}
        self.dead_error: Optional[str] = None
        self.listeners: List[Any] = []  # objects with on_finish(state), optional on_abort(state) (metrics)
        self._ctx: Optional[zmq.asyncio.Context] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._control_lock: Optional[asyncio.Lock] = None
        self._control_future: Optional[asyncio.Future] = None
        self._control_replies: list = []
        self._control_expected = 0

    def _load_mm_processor(self) -> Optional[Any]:
        if self.tokenizer is None:
            return None  # --skip-tokenizer-init: token ids only, no images
        args = self.server_args
        return load_multimodal_processor(args.tokenizer_path or args.model_path, self.architecture,
                                         args.trust_remote_code)

    def _media_loader(self) -> Optional[Any]:
        if self.mm_processor is None:
            return None
        from sglang.runtime.multimodal.media import MediaLoader, MediaOptions

        return MediaLoader(MediaOptions.from_server_args(self.server_args))

    async def _outgoing(self, req: TokenizedGenerateReq) -> TokenizedGenerateReq:
        """The message to send: large image/video tensors moved to shared memory (in the pool);
        each send gets its own segments, so n > 1 samples and retries stay independent."""
        if req.mm_inputs is None:
            return req
        return dataclasses.replace(req, mm_inputs=await self.run_tokenization(req.mm_inputs.exported))

    # ---------------------------------------------------------------- lifecycle
    def _ensure_started(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None:
            raise RuntimeError("TokenizerManager is bound to another event loop")
        self._loop = loop
        self._ctx = zmq.asyncio.Context(1)
        self._sends = []  # one per data-parallel replica
        for replica in range(self.router.num_replicas):
            sock = self._ctx.socket(zmq.PUSH)
            sock.connect(self.port_args.for_replica(replica).scheduler_ipc)
            self._sends.append(sock)
        self._recv = self._ctx.socket(zmq.PULL)
        self._recv.bind(self.port_args.tokenizer_ipc)
        self._control_lock = asyncio.Lock()
        self._tasks = [loop.create_task(self._handle_loop()), loop.create_task(self._watchdog())]

    def close(self) -> None:
        self.request_tokenizer.close()
        for task in getattr(self, "_tasks", []):
            task.cancel()
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None
        if self.mm_processor is not None:
            unlink_leftovers(os.getpid())  # image tensors sent to a scheduler that never read them

    def _check_alive(self) -> None:
        if self.dead_error is not None:
            raise EngineDeadError(self.dead_error)

    async def _watchdog(self) -> None:
        while self.dead_error is None:
            await asyncio.sleep(_WATCHDOG_PERIOD_S)
            for name, proc in self.procs:
                if not proc.is_alive():
                    self._on_child_death(name, proc)
                    return
            self._check_progress()

    def _check_progress(self) -> None:
        control = self._control_future is not None
        for replica, watch in enumerate(self.hang_watches):
            pending = self.router.loads[replica] + control
            stalled = watch.stalled_for(pending > 0)
            if stalled is not None:
                self._report_hang(replica, stalled, pending)
                return

    def _report_hang(self, replica: int, stalled: float, pending: int) -> None:
        name = "scheduler" if replica == 0 else f"scheduler DP{replica}"
        pid = dict(self.procs)[name].pid
        self._stop_engine(f"the {name} process (pid {pid}) made no progress for {stalled:.0f} s with "
                          f"{pending} request(s) pending (--watchdog-timeout "
                          f"{self.server_args.watchdog_timeout:g}); it is hung, the engine is stopped — restart it")

    def _on_child_death(self, name: str, proc) -> None:
        self._stop_engine(f"the {name} process (pid {proc.pid}) exited unexpectedly with code {proc.exitcode}; "
                          f"the engine is stopped — see the log above for its error, then restart")

    def _stop_engine(self, message: str) -> None:
        logger.error(message)
        self.fail_pending(message, refuse_new=True)

    def fail_pending(self, message: str, refuse_new: bool = False) -> None:
        """End every pending request and control call with `message` (EngineDeadError); with
        `refuse_new`, later calls fail at once with it too."""
        if refuse_new:
            self.dead_error = message
        for state in list(self.states.values()):
            state.fail(message)
        if self._control_future is not None and not self._control_future.done():
            self._control_future.set_exception(EngineDeadError(message))

    # ---------------------------------------------------------------- requests
    async def run_tokenization(self, fn, *args: Any, **kwargs: Any):
        """Run tokenizer-bound work (chat templates, /tokenize, prompt encoding) in the
        tokenization pool, keeping the event loop free for other clients."""
        return await self.request_tokenizer.run(fn, *args, **kwargs)

    async def generate_request(self, obj: GenerateReqInput, pooling: bool = False) -> AsyncIterator[Any]:
        """Yields result dicts: for a single prompt (n == 1) each yield is the cumulative state of
        that request (one yield when not streaming); otherwise yields one list with all results
        (prompt-major, n samples per prompt) or, when streaming, dicts tagged with 'index'.
        `pooling`: an encode request (managers/embedding_requests.py), for pooling models only."""
        self._ensure_started()
        self._check_alive()
        if pooling == self.is_generation:
            raise ValueError(wrong_model_kind_message(self.is_generation, self.server_args.served_model_name))
        items, tokenized = await self.request_tokenizer.tokenize_request(obj)  # all checked before any is sent
        self.lora.check([item.lora_path for item in items])
        expanded = await self._expand_n(items, tokenized)
        if len(expanded) == 1 and not obj.is_batch():
            item, req = expanded[0]
            async for out in self._run_one(item, req):
                yield out
            return
        if obj.stream:
            async for out in self._run_many_streaming(expanded):
                yield out
            return
        results = await asyncio.gather(*[self._collect(item, req) for item, req in expanded])
        yield list(results)

    async def _expand_n(self, items, tokenized):
        out = []
        for item, req in zip(items, tokenized):
            n = req.sampling_params.n
            if n == 1:
                out.append((item, req))
                continue
            replica = None
            if not self.server_args.disable_radix_cache:
                replica = await self._prefill_only(req)  # children then share the prompt's KV via the radix cache
            for j in range(n):
                child = _clone_for_sample(req, j)
                if replica is not None:
                    self._pinned[child.rid] = replica  # where the prompt's KV is
                out.append((item, child))
        return out

    async def _prefill_only(self, req: TokenizedGenerateReq) -> int:
        """Prefill the prompt alone; returns the data-parallel replica that cached it."""
        warm = _clone_for_sample(req, 0, suffix="prefill")
        warm.sampling_params = warm.sampling_params.copy_with(max_new_tokens=0, n=1)
        warm.return_logprob = False
        replica = self.router.choose(warm.input_ids).replica
        self.router.finish(replica)  # _run_one counts it in flight
        async for _ in self._run_one(None, warm, replica=replica):
            pass
        return replica

    async def _collect(self, item, req) -> dict:
        last = None
        async for out in self._run_one(item, req):
            last = out
        return last

    async def _run_many_streaming(self, expanded):
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(index, item, req):
            try:
                async for out in self._run_one(item, req):
                    out["index"] = index
                    await queue.put(out)
            except Exception as exc:  # surfaced to the consumer below
                await queue.put(exc)
            await queue.put(None)

        tasks = [asyncio.ensure_future(pump(i, it, rq)) for i, (it, rq) in enumerate(expanded)]
        remaining = len(tasks)
        try:
            while remaining:
                got = await queue.get()
                if got is None:
                    remaining -= 1
                elif isinstance(got, Exception):
                    raise got
                else:
                    yield got
        finally:
            for task in tasks:
                task.cancel()

    async def _run_one(self, item: Optional[SingleGenerateInput], req: TokenizedGenerateReq,
                       replica: Optional[int] = None):
        """`replica`: the data-parallel replica to use; by default the router chooses."""
        self._check_alive()
        if req.rid in self.states:
            raise ValueError(f"a request with rid {req.rid!r} is already running")
        text_logprobs = bool(item and item.return_text_in_logprobs)
        state = ReqState(req, self.tokenizer if text_logprobs else None)
        outgoing = await self._outgoing(req)
        if replica is None:
            replica = self._pinned.pop(req.rid, None)
        if replica is None:
            replica = self.router.choose(req.input_ids).replica
        else:
            self.router.loads[replica] += 1
        self.states[req.rid] = state
        self.replica_of[req.rid] = replica
        try:
            self._sends[replica].send_pyobj(outgoing)
            while True:
                await state.event.wait()
                state.event.clear()
                if state.error is not None:
                    raise EngineDeadError(state.error)
                out = state.to_dict()
                if state.finished:
                    yield out
                    return
                if req.stream:
                    yield out
        finally:
            if not state.finished and self.dead_error is None:
                self.abort_request(req.rid)  # client went away: free its KV
                for listener in self.listeners:
                    on_abort = getattr(listener, "on_abort", None)
                    if on_abort is not None:
                        on_abort(state)
            self.states.pop(req.rid, None)
            self.router.finish(self.replica_of.pop(req.rid))

    def abort_request(self, rid: str = "", message: str = "aborted by request") -> None:
        """Abort `rid` on its replica; an unknown rid (or "", all requests) goes to every replica."""
        if self._ctx is None:
            return
        replica = self.replica_of.get(rid)
        for sock in self._sends if replica is None else [self._sends[replica]]:
            sock.send_pyobj(AbortReq(rid, message))

    # ---------------------------------------------------------------- info
    def model_info(self) -> dict:
        """Static model facts (GET /get_model_info, Engine.get_model_info). The chat template is
        --chat-template when given, else the tokenizer's own Jinja source, else None, so that
        clients can tell "the model has none" apart from a server-side fallback."""
        args, tok = self.server_args, self.tokenizer
        return {
            "model_path": args.model_path, "tokenizer_path": args.tokenizer_path,
            "served_model_name": args.served_model_name, "is_generation": self.is_generation,
            "context_length": self.context_len, "vocab_size": self.vocab_size,
            "max_total_num_tokens": self.max_total_num_tokens,
            "chat_template": resolve_chat_template(args.chat_template) or _tokenizer_template(tok),
            "bos_token": _token_str(getattr(tok, "bos_token", None)),
            "eos_token": _token_str(getattr(tok, "eos_token", None)),
            **self._media_info(),
        }

    def _media_info(self) -> dict:
        """What clients need to send images: whether they are accepted and how a prompt marks one."""
        mm = self.mm_processor
        return {
            "is_multimodal": mm is not None,
            "supports_images": mm is not None,
            "supports_video": bool(mm is not None and mm.supports_video),
            "image_token": mm.image_text if mm is not None else None,
            "video_token": mm.video_text if mm is not None else None,
        }

    # ---------------------------------------------------------------- control
    async def _control(self, msg, reply_type, replicas: Optional[List[int]] = None) -> list:
        """Send `msg` to the given replicas (default: all) and return their replies (in the
        order they arrive: control replies carry no replica, and callers only aggregate)."""
        self._ensure_started()
        self._check_alive()
        replicas = list(range(self.router.num_replicas)) if replicas is None else replicas
        async with self._control_lock:
            self._control_future = asyncio.get_running_loop().create_future()
            self._control_replies, self._control_expected = [], len(replicas)
            try:
                for replica in replicas:
                    self._sends[replica].send_pyobj(msg)
                replies = await self._control_future
            finally:
                self._control_future = None
        assert all(isinstance(reply, reply_type) for reply in replies)
        return replies

    async def flush_cache(self) -> FlushCacheReply:
        replies = await self._control(FlushCacheReq(), FlushCacheReply)
        if all(reply.success for reply in replies):
            self.router.clear_cache()
        messages = sorted({reply.message for reply in replies if reply.message})
        return FlushCacheReply(all(reply.success for reply in replies), "; ".join(messages))

    async def load_lora_adapter(self, name: str, path: str) -> LoraReply:
        return self.lora.merge(await self._control(LoadLoraReq(name, path), LoraReply))

    async def unload_lora_adapter(self, name: str) -> LoraReply:
        return self.lora.merge(await self._control(UnloadLoraReq(name), LoraReply))

    async def get_server_state(self) -> dict:
        """The scheduler's state; with data parallelism, the replicas' states summed (request
        counts) or averaged (token usage), and each replica's own under "replicas"."""
        replies = await self._control(ServerStateReq(), ServerStateReply)
        return merge_replica_states([reply.state for reply in replies])

    async def concat_and_append(self, parent: PromptLike, children: List[PromptLike],
                                prefill_children: bool = True) -> dict:
        """Cache `parent + suffix_1 + ... + suffix_N` built from the children's KV (see kv_concat).

        With `prefill_children`, the parent and each child first run as prefill-only requests:
        tokens that were never computed (a child's last generated token, a re-tokenized
        boundary) get cached, while everything already cached is served by the radix cache."""
        self._ensure_started()
        self._check_alive()
        parent_ids, children_ids = await self._concat_inputs(parent, children)
        # One replica's cache holds the children's KV: the prefills and the copy all go to replica 0.
        if prefill_children:
            await asyncio.gather(*[self._prefill_ids(ids) for ids in [parent_ids, *children_ids]])
        (reply,) = await self._control(ConcatAppendReq(parent_ids, children_ids), ConcatAppendReply, [0])
        if not reply.success:
            raise ValueError(reply.message)
        return reply.to_dict()

    async def _concat_inputs(self, parent: PromptLike, children: List[PromptLike]):
        if self.server_args.disable_radix_cache:
            raise ValueError("concat_and_append needs the radix cache, but the server runs with --disable-radix-cache")
        if not isinstance(children, list) or not children:
            raise ValueError("'children' must be a non-empty list of texts or token-id lists")
        if len(children) > MAX_CONCAT_CHILDREN:
            raise ValueError(f"at most {MAX_CONCAT_CHILDREN} children per call, got {len(children)}")
        parent_ids, *children_ids = await self.request_tokenizer.prompt_ids_many(
            [(parent, "parent"), *[(c, f"children[{i}]") for i, c in enumerate(children)]])
        total = len(parent_ids) + sum(len(c) - _common_prefix_len(parent_ids, c) for c in children_ids)
        if total >= self.context_len:
            raise ValueError(f"the concatenation has {total} tokens but the context length is {self.context_len}")
        return parent_ids, children_ids

    async def _prefill_ids(self, ids: List[int]) -> None:
        req = TokenizedGenerateReq(rid=f"concat-{uuid.uuid4().hex}", input_text=None, input_ids=list(ids),
                                   sampling_params=SamplingParams.from_dict({"max_new_tokens": 0}),
                                   created_time=time.time())
        req.sampling_params.normalize(self.tokenizer)
        async for _ in self._run_one(None, req, replica=0):
            pass

    # ---------------------------------------------------------------- receiving
    async def _handle_loop(self) -> None:
        while True:
            msg = await self._recv.recv_pyobj()
            if isinstance(msg, BatchStrOut):
                for out in msg.outputs:
                    self._dispatch(out)
            elif isinstance(msg, CONTROL_REPLIES):
                if self._control_future is not None and not self._control_future.done():
                    self._control_replies.append(msg)
                    if len(self._control_replies) == self._control_expected:
                        self._control_future.set_result(self._control_replies)
            else:
                logger.error("tokenizer manager got an unexpected message %r", type(msg).__name__)

    def _dispatch(self, out: StrOut) -> None:
        state = self.states.get(out.rid)
        if state is None:
            return  # already aborted / collected
        state.update(out)
        reason = out.finished_reason or {}
        if reason.get("type") == "abort" and reason.get("status_code") == 500:
            # The detokenizer failed this request; the scheduler may still be generating it.
            self.abort_request(out.rid, reason.get("message", "internal error"))
        if state.finished:
            for listener in self.listeners:
                listener.on_finish(state)
        state.event.set()


def _tokenizer_template(tok: Any) -> Optional[str]:
    source = getattr(tok, "chat_template", None)
    if isinstance(source, dict):  # several named templates: HF's default is "default"
        source = source.get("default")
    return source if isinstance(source, str) and source else None


def _token_str(token: Any) -> Optional[str]:
    if token is None:
        return None
    return token if isinstance(token, str) else str(getattr(token, "content", token))


def _clone_for_sample(req: TokenizedGenerateReq, j: int, suffix: Optional[str] = None) -> TokenizedGenerateReq:
    params = req.sampling_params
    seed = None if params.seed is None else params.seed + j
    return TokenizedGenerateReq(
        rid=f"{req.rid}-{suffix or j}", input_text=req.input_text, input_ids=list(req.input_ids),
        sampling_params=params.copy_with(n=1, seed=seed), return_logprob=req.return_logprob,
        logprob_start_len=req.logprob_start_len, top_logprobs_num=req.top_logprobs_num,
        token_ids_logprob=req.token_ids_logprob, stream=req.stream, created_time=req.created_time,
        mm_inputs=req.mm_inputs, lora_path=req.lora_path,
    )
