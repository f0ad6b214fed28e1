"""The offline Engine: the runtime without HTTP.

    with sglang.Engine(model_path=DIR) as engine:
        out = engine.generate("Hello", {"max_new_tokens": 16, "temperature": 0})

The tokenizer manager runs on a private event loop in a background thread, so the same Engine
serves synchronous callers (generate), asyncio callers on any loop (async_generate), and both
streaming forms. Streaming yields incremental chunks: each chunk's "text" and "output_ids" hold
only what is new since the previous chunk.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import queue
import threading
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional, Union

from sglang.runtime.entrypoints.launch import exit_if_spawn_bootstrap, launch_runtime
from sglang.runtime.managers.embedding_requests import embedding_error, encode_request, make_encode_input
from sglang.runtime.managers.generate_input import GenerateReqInput
from sglang.runtime.server_args import ServerArgs

logger = logging.getLogger(__name__)

_END = object()


class Engine:
    def __init__(self, server_args: Optional[ServerArgs] = None, **kwargs: Any):
        exit_if_spawn_bootstrap()  # an unguarded script re-run by a spawned child: see launch.py
        self.server_args = server_args or ServerArgs(**kwargs)
        self._closed = False
        self._closed_reason = "the engine has been shut down"
        if self.server_args.node_rank > 0:
            self._serve_as_worker_node()
            return
        self.tokenizer_manager, self._runtime = launch_runtime(self.server_args)
        self._procs = self._runtime.procs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sglang-engine-loop", daemon=True)
        self._thread.start()
        atexit.register(self.shutdown)

    def _serve_as_worker_node(self) -> None:
        """Node K > 0 of a multi-node launch runs its tensor-parallel ranks until node 0 stops
        (blocking, as upstream); requests go to node 0's Engine or server."""
        from sglang.runtime.entrypoints.worker_node import run_worker_node

        self._closed = True
        self.exit_code = run_worker_node(self.server_args)
        self._closed_reason = (f"this Engine was node {self.server_args.node_rank} of a multi-node launch "
                               f"(--nnodes {self.server_args.nnodes}), which has ended; requests go to node 0")

    # ---------------------------------------------------------------- public API
    def generate(
        self,
        prompt: Optional[Union[str, List[str]]] = None,
        sampling_params: Optional[Union[Dict, List[Dict]]] = None,
        input_ids: Optional[Union[List[int], List[List[int]]]] = None,
        return_logprob: Union[bool, List[bool]] = False,
        logprob_start_len: Optional[Union[int, List[int]]] = None,
        top_logprobs_num: Optional[Union[int, List[int]]] = None,
        token_ids_logprob: Optional[Union[List[int], List[List[int]]]] = None,
        stream: bool = False,
        rid: Optional[Union[str, List[str]]] = None,
        return_text_in_logprobs: bool = False,
        image_data: Any = None,
        video_data: Any = None,
        lora_path: Optional[Union[str, List[Optional[str]]]] = None,
    ):
        obj = self._make_input(prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
                               top_logprobs_num, token_ids_logprob, stream, rid, return_text_in_logprobs)
        # Images: one (path, URL, data URL, bytes or PIL image) or a list per prompt; a batch takes
        # one entry per prompt. A text-only model refuses them with a ValueError.
        obj.image_data, obj.video_data = image_data, video_data
        obj.lora_path = lora_path  # a LoRA adapter name, or one (or None) per prompt
        if stream:
            return self._stream_sync(obj)
        return self._submit(self._generate_all(obj)).result()

    async def async_generate(
        self,
        prompt: Optional[Union[str, List[str]]] = None,
        sampling_params: Optional[Union[Dict, List[Dict]]] = None,
        input_ids: Optional[Union[List[int], List[List[int]]]] = None,
        return_logprob: Union[bool, List[bool]] = False,
        logprob_start_len: Optional[Union[int, List[int]]] = None,
        top_logprobs_num: Optional[Union[int, List[int]]] = None,
        token_ids_logprob: Optional[Union[List[int], List[List[int]]]] = None,
        stream: bool = False,
        rid: Optional[Union[str, List[str]]] = None,
        return_text_in_logprobs: bool = False,
        image_data: Any = None,
        video_data: Any = None,
        lora_path: Optional[Union[str, List[Optional[str]]]] = None,
    ):
        obj = self._make_input(prompt, sampling_params, input_ids, return_logprob, logprob_start_len,
                               top_logprobs_num, token_ids_logprob, stream, rid, return_text_in_logprobs)
        # Images: one (path, URL, data URL, bytes or PIL image) or a list per prompt; a batch takes
        # one entry per prompt. A text-only model refuses them with a ValueError.
        obj.image_data, obj.video_data = image_data, video_data
        obj.lora_path = lora_path  # a LoRA adapter name, or one (or None) per prompt
        if stream:
            return self._stream_async(obj)
        return await asyncio.wrap_future(self._submit(self._generate_all(obj)))

    def encode(self, prompt: Optional[Union[str, List[str]]] = None,
               input_ids: Optional[Union[List[int], List[List[int]]]] = None,
               rid: Optional[Union[str, List[str]]] = None) -> Union[dict, List[dict]]:
        """Embeddings of an embedding model (Engine(is_embedding=True), or a backbone-only
        checkpoint), or scores of a reward / classification model: {"embedding": [...],
        "meta_info": {...}} for one prompt, a list of them for a batch (texts or token-id lists).
        Raises ValueError for bad input, on a generation model, or naming why a prompt failed."""
        return self._submit(self._encode(make_encode_input(prompt, input_ids, rid))).result()

    async def async_encode(self, prompt: Optional[Union[str, List[str]]] = None,
                           input_ids: Optional[Union[List[int], List[List[int]]]] = None,
                           rid: Optional[Union[str, List[str]]] = None) -> Union[dict, List[dict]]:
        return await asyncio.wrap_future(self._submit(self._encode(make_encode_input(prompt, input_ids, rid))))

    async def _encode(self, obj: GenerateReqInput) -> Union[dict, List[dict]]:
        result = await encode_request(self.tokenizer_manager, obj)
        error = embedding_error(result)
        if error is not None:
            raise ValueError(error)
        return result

    def load_lora_adapter(self, lora_name: str, lora_path: str) -> dict:
        """Load a PEFT adapter under `lora_name` at run time; {"success", "message", "loaded"}."""
        reply = self._submit(self.tokenizer_manager.load_lora_adapter(lora_name, lora_path)).result()
        return {"success": reply.success, "message": reply.message, "loaded": reply.loaded}

    def unload_lora_adapter(self, lora_name: str) -> dict:
        """Unload an adapter; refused (success False) while running or waiting requests use it."""
        reply = self._submit(self.tokenizer_manager.unload_lora_adapter(lora_name)).result()
        return {"success": reply.success, "message": reply.message, "loaded": reply.loaded}

    def flush_cache(self) -> bool:
        return self._submit(self.tokenizer_manager.flush_cache()).result().success

    def get_model_info(self) -> dict:
        """model path, context length, vocab size, chat_template (Jinja source or None), bos/eos
        token strings, supports_images / supports_video and the image/video prompt marks."""
        return self.tokenizer_manager.model_info()

    def concat_and_append(self, parent: Union[str, List[int]], children: List[Union[str, List[int]]],
                          prefill_children: bool = True) -> dict:
        """Cache `parent + continuation_1 + ... + continuation_N` by copying the children's KV
        (each child is the parent's text or ids plus its continuation). Returns input_ids,
        num_tokens, copied_tokens, cached_prefix_tokens, complete, requested_tokens, message.
        Raises ValueError for bad input or with the radix cache disabled."""
        return self._submit(self.tokenizer_manager.concat_and_append(parent, children, prefill_children)).result()

    async def async_concat_and_append(self, parent: Union[str, List[int]], children: List[Union[str, List[int]]],
                                      prefill_children: bool = True) -> dict:
        coro = self.tokenizer_manager.concat_and_append(parent, children, prefill_children)
        return await asyncio.wrap_future(self._submit(coro))

    def get_server_info(self) -> dict:
        state = self._submit(self.tokenizer_manager.get_server_state()).result()
        return {**self._static_info(), **state}

    def abort_request(self, rid: str = "") -> None:
        self._loop.call_soon_threadsafe(self.tokenizer_manager.abort_request, rid)

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._submit(self._close_tm()).result(timeout=5)
        except Exception:  # the loop may already be unusable; processes still get stopped
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._runtime.stop()

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()

    @property
    def tokenizer(self):
        return self.tokenizer_manager.tokenizer

    # ---------------------------------------------------------------- internals
    async def _close_tm(self) -> None:
        self.tokenizer_manager.close()

    def _static_info(self) -> dict:
        info = self.tokenizer_manager.model_info()
        return {k: info[k] for k in ("model_path", "context_length", "max_total_num_tokens", "vocab_size")}

    @staticmethod
    def _make_input(prompt, sampling_params, input_ids, return_logprob, logprob_start_len, top_logprobs_num,
                    token_ids_logprob, stream, rid, return_text_in_logprobs) -> GenerateReqInput:
        return GenerateReqInput(
            text=prompt, input_ids=input_ids, sampling_params=sampling_params, rid=rid,
            return_logprob=return_logprob,
            logprob_start_len=-1 if logprob_start_len is None else logprob_start_len,
            top_logprobs_num=0 if top_logprobs_num is None else top_logprobs_num,
            token_ids_logprob=token_ids_logprob, return_text_in_logprobs=return_text_in_logprobs,
            stream=stream,
        )

    def _submit(self, coro):
        if self._closed and not coro.__qualname__.endswith("_close_tm"):
            coro.close()
            raise RuntimeError(self._closed_reason)
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    async def _generate_all(self, obj: GenerateReqInput):
        last = None
        async for out in self.tokenizer_manager.generate_request(obj):
            last = out
        return last

    async def _pump(self, obj: GenerateReqInput, put) -> None:
        """Runs on the engine loop: turns cumulative outputs into incremental chunks."""
        seen: Dict[int, tuple] = {}
        try:
            async for out in self.tokenizer_manager.generate_request(obj):
                idx = out.get("index", 0)
                text_len, ids_len = seen.get(idx, (0, 0))
                chunk = dict(out)
                chunk["text"] = out["text"][text_len:]
                chunk["output_ids"] = out["output_ids"][ids_len:]
                seen[idx] = (len(out["text"]), len(out["output_ids"]))
                put(chunk)
        except BaseException as exc:  # delivered to the consumer, which re-raises it
            put(exc)
        put(_END)

    def _stream_sync(self, obj: GenerateReqInput) -> Iterator[dict]:
        q: "queue.Queue" = queue.Queue()
        future = self._submit(self._pump(obj, q.put))
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()

    async def _stream_async(self, obj: GenerateReqInput) -> AsyncIterator[dict]:
        caller_loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        future = self._submit(self._pump(obj, lambda item: caller_loop.call_soon_threadsafe(q.put_nowait, item)))
        try:
            while True:
                item = await q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            future.cancel()
