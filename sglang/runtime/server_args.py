"""The one set of runtime options. The CLI (`launch_server`, benchmarks) is derived from it.

Every field carries its help text in `metadata`; `add_cli_args` turns fields into flags with the
same names as upstream SGLang (`model_path` -> `--model-path`). Defaults are written once, here.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import random
from dataclasses import dataclass, field
from typing import Any, Optional

from sglang.runtime.function_call.registry import TOOL_CALL_PARSER_NAMES
from sglang.runtime.layers.attention.registry import ATTENTION_BACKEND_NAMES
from sglang.runtime.layers.quantization import QUANTIZATION_METHODS
from sglang.runtime.managers.dp_router import LOAD_BALANCE_METHODS
from sglang.runtime.lora.config import validate_lora_args
from sglang.runtime.reasoning.registry import REASONING_PARSER_NAMES

logger = logging.getLogger(__name__)

SCHEDULE_POLICIES = ("fcfs", "lpm", "dfs-weight", "lof", "random")
LOAD_FORMATS = ("auto", "safetensors", "pt", "gguf", "dummy")
MODEL_IMPLS = ("auto", "sglang", "transformers")
SPECULATIVE_ALGORITHMS = ("NGRAM", "DRAFT", "EAGLE")
DTYPES = ("auto", "float32", "bfloat16", "float16", "half", "float", "bf16", "fp16", "fp32")


def _f(default: Any, help: str, choices: Optional[tuple] = None, nargs: Optional[str] = None, **kw) -> Any:
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if nargs is not None:
        meta["nargs"] = nargs
    if callable(default) and not isinstance(default, type):
        return field(default_factory=default, metadata=meta, **kw)
    return field(default=default, metadata=meta, **kw)


@dataclass
class ServerArgs:
    # Model and tokenizer
    model_path: str = _f(None, "The checkpoint: a local directory (config.json, weights, tokenizer), a GGUF file (model.gguf: config, tokenizer and weights from the one file), or a Hugging Face repo id 'org/name', read from the local Hugging Face cache (HF_HOME) and downloaded into it when missing, unless HF_HUB_OFFLINE=1.")
    tokenizer_path: Optional[str] = _f(None, "Tokenizer directory (or GGUF file); defaults to --model-path.")
    tokenizer_mode: str = _f("auto", "'auto' uses the fast tokenizer when available; 'slow' forces the Python one.", ("auto", "slow"))
    skip_tokenizer_init: bool = _f(False, "Do not load a tokenizer: requests must pass input_ids and get output_ids only.")
    load_format: str = _f("auto", "Weight format: auto/safetensors/pt read the checkpoint; 'gguf' reads a GGUF file (auto does too when --model-path is a .gguf file; with gguf it may be a directory holding one), dequantized into --dtype at load; 'dummy' makes random weights at the real shapes (benchmarks).", LOAD_FORMATS)
    model_impl: str = _f("auto", "Which implementation runs the model: 'sglang' our own (an architecture we do not implement is refused), 'transformers' the transformers modeling code with our paged KV cache and attention plugged in (any AutoModelForCausalLM architecture whose attention our kernels can serve; slower, no tensor parallelism, quantization or CUDA graphs), 'auto' ours when we implement the architecture, else transformers.", MODEL_IMPLS)
    trust_remote_code: bool = _f(False, "Allow custom code from the checkpoint when reading its config/tokenizer.")
    dtype: str = _f("auto", "Weight and activation dtype. 'auto' takes the checkpoint's torch_dtype on GPU and float32 on CPU.", DTYPES)
    quantization: Optional[str] = _f(None, "Weight quantization method. A checkpoint whose config.json has a quantization_config (fp8, compressed-tensors FP8, awq, gptq) uses its method without the flag. 'fp8' on a float checkpoint quantizes the linear layers at load (per-channel FP8 weights, dynamic per-token FP8 activations; torch._scaled_mm on CUDA, its torch twin elsewhere). 'gguf' (CPU, a GGUF checkpoint): Q4_0/Q4_1/Q8_0 weights stay in their blocks and C++ kernels compute on them as llama.cpp does (the file's own values, activations rounded to int8 per 32-value block; about a sixth of float32's bytes per decode step); layers of other types are dequantized as without the flag. Default: weights dequantized into --dtype at load.", QUANTIZATION_METHODS)
    kv_cache_dtype: str = _f("auto", "KV cache dtype; 'auto' follows --dtype. fp8_e4m3 / fp8_e5m2 store K and V in one byte (twice the tokens of bfloat16 in the same memory), value / per-layer scale (1.0) rounded to FP8 and dequantized on read; attention backends torch_native and triton (flashinfer needs the model dtype).", ("auto", "float32", "bfloat16", "float16", "fp8_e4m3", "fp8_e5m2"))
    context_length: Optional[int] = _f(None, "Maximum sequence length (prompt + output). Defaults to the model's max_position_embeddings.")
    device: str = _f("auto", "Device to run on: 'cuda', 'cpu', or 'auto' (cuda when available).", ("auto", "cuda", "cpu"))
    served_model_name: Optional[str] = _f(None, "Model name reported by the API; defaults to --model-path.")
    chat_template: Optional[str] = _f(None, "Chat template: a built-in name, a Jinja file, or a Jinja string; defaults to the tokenizer's.")
    revision: Optional[str] = _f(None, "Branch, tag or commit of a Hugging Face repo id given as --model-path (default: main); ignored for a local directory.")
    random_seed: Optional[int] = _f(None, "Seed for the server's random state (weights in dummy mode, unseeded sampling).")
    is_embedding: bool = _f(False, "Serve the model as an embedding model (/v1/embeddings, /encode, Engine.encode): a *ForCausalLM checkpoint then returns its final hidden states pooled instead of generating. Backbone-only (LlamaModel, MistralModel, Qwen2Model) and *ForSequenceClassification checkpoints are pooling models without the flag. See docs/embeddings.md.")
    embedding_pooling: str = _f("auto", "Pooling of an embedding model's final hidden states: 'auto' follows the checkpoint's sentence-transformers config (modules.json + 1_Pooling/config.json), else the last token; 'last' or 'mean' override it.", ("auto", "last", "mean"))
    embedding_normalize: str = _f("auto", "L2-normalize embeddings: 'auto' does when the checkpoint's modules.json has a Normalize module, or when it has no modules.json; 'true'/'false' override it.", ("auto", "true", "false"))

    # HTTP server
    host: str = _f("127.0.0.1", "Address the HTTP server binds to.")
    port: int = _f(30000, "Port the HTTP server listens on.")
    api_key: Optional[str] = _f(None, "If set, every route except /health requires 'Authorization: Bearer <key>'.")
    enable_metrics: bool = _f(False, "Expose Prometheus metrics at /metrics.")
    log_level: str = _f("info", "Logging level for all processes.", ("debug", "info", "warning", "error"))
    log_requests: bool = _f(False, "Log every request's inputs and outputs.")
    skip_server_warmup: bool = _f(False, "Do not send a warm-up request at startup.")
    stream_interval: int = _f(1, "Send a streaming chunk every N decoded tokens.")
    watchdog_timeout: float = _f(300.0, "Seconds the scheduler may go without finishing a loop iteration (one batch) while requests are pending before it is declared hung: pending requests fail, /health answers 503 and the server exits with code 1.")
    graceful_shutdown_timeout: float = _f(5.0, "On SIGTERM/SIGINT, seconds to let in-flight requests finish (new ones get 503) before the rest are ended with an error; a second signal ends them at once.")

    # Memory and scheduling
    mem_fraction_static: Optional[float] = _f(None, "Fraction of device memory (on CPU: of --cpu-memory-budget-gb) for weights plus KV cache.")
    cpu_memory_budget_gb: float = _f(4.0, "On CPU, the memory budget that --mem-fraction-static is a fraction of.")
    max_running_requests: Optional[int] = _f(None, "Most requests in the running batch at once.")
    max_queued_requests: Optional[int] = _f(None, "Most requests waiting; beyond it new requests are rejected (HTTP 503).")
    max_total_tokens: Optional[int] = _f(None, "Size of the KV token pool; overrides the size derived from --mem-fraction-static.")
    chunked_prefill_size: Optional[int] = _f(None, "Longest prefill chunk in tokens; longer prompts are split. -1 disables chunking.")
    max_prefill_tokens: int = _f(16384, "Most new prompt tokens in one prefill batch.")
    schedule_policy: str = _f("fcfs", "Order of the waiting queue: fcfs, lpm (longest prefix match), dfs-weight, lof (longest output first), random.", SCHEDULE_POLICIES)
    schedule_conservativeness: float = _f(1.0, "Scales the decode tokens reserved for running requests; larger admits fewer new ones.")
    disable_radix_cache: bool = _f(False, "Turn off RadixAttention prefix caching.")

    # Kernels and execution
    attention_backend: Optional[str] = _f(None, "Attention backend; defaults to 'triton' on CUDA and 'torch_native' on CPU. 'flashinfer' needs the flashinfer-python package and a float16/bfloat16 model.", ATTENTION_BACKEND_NAMES)
    sampling_backend: Optional[str] = _f(None, "Sampling implementation: 'pytorch' (default).")
    disable_cuda_graph: bool = _f(False, "Do not capture CUDA graphs for decode.")
    cuda_graph_max_bs: Optional[int] = _f(None, "Largest decode batch size captured in a CUDA graph.")
    enable_fused_gemv: bool = _f(False, "On CUDA, run one-token steps (batch-1 decode) of Llama-style models on fused Triton GEMVs (RMSNorm, SiLU-mul and residual adds folded into the matrix-vector products) instead of cuBLAS and separate kernels. Off by default: on an H200 it measured even with cuBLAS (docs/architecture.md).")
    disable_cpu_kernels: bool = _f(False, "On CPU, keep every layer on torch ops instead of the C++ kernels for RMSNorm, rotary + KV write, decode attention and SiLU-mul, and decode steps on the modules instead of direct kernel calls (float32; built once with the system compiler, skipped with a logged reason when it cannot be).")
    disable_overlap_schedule: bool = _f(False, "Do not overlap CPU scheduling with GPU execution: process each batch's sampled tokens before building the next batch (overlap is on by default, also on CPU).")
    tp_size: int = _f(1, "Tensor-parallel size (processes, one per device).")
    base_gpu_id: int = _f(0, "First GPU index to use.")
    dp_size: int = _f(1, "Data-parallel size: independent replicas (each with --tp-size processes and its own KV cache) behind one server; on CUDA replica r uses GPUs --base-gpu-id + r * tp_size onwards.")
    nnodes: int = _f(1, "Number of machines the --tp-size ranks span (tp_size must be a multiple of it; each node runs tp_size / nnodes ranks). Launch the same command on every node with its own --node-rank; node 0 serves HTTP, the others only run their ranks.")
    node_rank: int = _f(0, "This machine's index among the --nnodes nodes (0 serves requests and holds TP rank 0).")
    dist_init_addr: Optional[str] = _f(None, "host:port where the tensor-parallel ranks meet (node 0's address and a free TCP port; the same on every node). Required with --nnodes > 1; without it a single node's ranks meet through a file in the runtime's private directory. Set GLOO_SOCKET_IFNAME / NCCL_SOCKET_IFNAME if the nodes should talk over a particular interface.")
    load_balance_method: str = _f("cache_aware", "How a request's data-parallel replica is chosen: 'cache_aware' (the replica already holding the longest prefix of its prompt, else the least loaded), 'shortest_queue' (fewest requests in flight), 'round_robin'.", LOAD_BALANCE_METHODS)

    # Structured generation
    grammar_backend: str = _f("xgrammar", "Backend for regex/JSON-schema/EBNF constraints. lark: EBNF on a character-level LALR(1) parser built by lark (regex/JSON go to fsm).", ("xgrammar", "fsm", "lark", "none"))
    tool_call_parser: Optional[str] = _f(None, "Format of tool calls in model output, for `tools` in chat requests. Default: detected from the chat template; naming one makes tool calling work with any template (tools are then described in the family's system-prompt format when the template ignores them).", TOOL_CALL_PARSER_NAMES)
    reasoning_parser: Optional[str] = _f(None, "Split `<think>...</think>` reasoning from chat answers into message.reasoning_content (deepseek-r1 / qwen3-thinking: output starts inside the block; qwen3: when the output opens one).", REASONING_PARSER_NAMES)
    disable_jump_forward: bool = _f(False, "Turn off jump-forward decoding of forced text in constrained generation.")
    disable_in_batch_jump_forward: bool = _f(
        False, "Jump-forward by re-prefilling the forced text in its own extend pass (the other running requests "
        "wait) instead of as extra rows of the next decode pass; for A/B comparison.")
    constrained_json_whitespace_pattern: Optional[str] = _f(None, "Regex for whitespace allowed between JSON tokens. The fsm backend defaults to '[ ]?'; setting it makes xgrammar allow any JSON whitespace.")

    # Speculative decoding
    speculative_algorithm: Optional[str] = _f(None, "Speculative decoding: 'NGRAM' drafts each request's next tokens from its own prompt+output (prompt lookup) and verifies them in one forward pass; 'DRAFT' drafts greedily with a separate small checkpoint (--speculative-draft-model-path, same tokenizer, its own KV pool); 'EAGLE' grows a token tree with an EAGLE/EAGLE-2/EAGLE-3 head (--speculative-draft-model-path) fed by the target's hidden states and verifies every node in one pass. Greedy outputs are unchanged and sampling keeps the target distribution. Default: off.", SPECULATIVE_ALGORITHMS)
    speculative_draft_model_path: Optional[str] = _f(None, "Draft checkpoint for --speculative-algorithm DRAFT/EAGLE (same tokenizer as the target).")
    speculative_num_steps: Optional[int] = _f(None, "DRAFT/EAGLE: draft-model steps per verify pass (drafts per request: at most this and --speculative-num-draft-tokens - 1). NGRAM drafts in one lookup and ignores it.")
    speculative_num_draft_tokens: Optional[int] = _f(None, "Tokens per request in one verify pass: the newest accepted token plus up to this many minus one drafts (default 8).")
    speculative_eagle_topk: Optional[int] = _f(None, "EAGLE: branches kept per tree level (each frontier node's top-k children compete for the next level's k places; 1 drafts a chain). Default 4.")
    speculative_ngram_min_match_window_size: int = _f(1, "NGRAM: shortest suffix (in tokens) of a request's text that must recur earlier in it to draft from.")
    speculative_ngram_max_match_window_size: int = _f(12, "NGRAM: longest suffix tried first when looking for an earlier occurrence (longer matches predict better).")
    speculative_disable_batch_size: int = _f(8, "Decode batches with more running requests than this skip speculation (plain decode steps, overlapped as usual): a verify pass costs more than it saves once the batch is compute-bound.")

    # Multi-LoRA serving
    enable_lora: bool = _f(False, "Serve LoRA adapters on top of the base model (implied by --lora-paths); requests pick one with lora_path.")
    lora_paths: Optional[list] = _f(None, "LoRA adapters to load at start, each 'name=path' or a path (named by its basename): a PEFT directory with adapter_config.json and adapter_model.safetensors.", nargs="*")
    max_loras_per_batch: int = _f(8, "Most distinct adapters in one batch (adapter slots on the device; the base model needs none). Requests whose adapter does not fit wait for a later batch.")
    max_lora_rank: Optional[int] = _f(None, "Largest adapter rank the device slots hold; default: the largest rank among --lora-paths (16 when none). Adapters of a larger rank are refused at load.")
    lora_target_modules: Optional[list] = _f(None, "Modules adapters may target, among q_proj k_proj v_proj o_proj gate_proj up_proj down_proj, or 'all' (default).", nargs="*")

    # Multimodal input (images and video in requests; these flags are ours, upstream has none)
    allow_local_media_path: Optional[str] = _f(None, "A directory whose files requests may name as images/videos (a path, relative ones inside it, or a file:// URL; symlinks and '..' are resolved before the check). Default: requests cannot read server files.")
    allow_private_media_urls: bool = _f(False, "Let image/video URLs in requests reach private, loopback, link-local and other non-public addresses (by default the server refuses them, so requests cannot probe its own network).")
    max_image_bytes: int = _f(20 << 20, "Largest encoded image a request may send or have downloaded, in bytes.")
    max_image_pixels: int = _f(40_000_000, "Largest decoded image (and video frame), in width*height pixels; guards against decompression bombs (tiny files with huge dimensions).")
    max_video_bytes: int = _f(200 << 20, "Largest encoded video file a request may send or have downloaded, in bytes.")
    max_video_frames: int = _f(64, "Most frames taken from one video: a video file is sampled evenly down to this many; a video sent as a list of frames may have no more.")
    media_fetch_timeout: float = _f(10.0, "Seconds allowed for downloading one image/video URL in a request, redirects included.")

    def __post_init__(self) -> None:
        if self.model_path is None:
            raise ValueError("model_path is required (--model-path DIR)")
        self.tokenizer_path = self.tokenizer_path or self.model_path
        self.served_model_name = self.served_model_name or self.model_path
        self.device = resolve_device(self.device)
        if self.random_seed is None:
            self.random_seed = random.randint(0, 1 << 30)
        if self.attention_backend is None:
            self.attention_backend = "triton" if self.device == "cuda" else "torch_native"
        if self.mem_fraction_static is None:
            self.mem_fraction_static = 0.85 if self.device == "cuda" else 0.5
        if self.chunked_prefill_size is None:
            self.chunked_prefill_size = 8192 if self.device == "cuda" else 2048
        if self.device == "cpu":
            self.disable_cuda_graph = True
        self.validate()

    def validate(self) -> None:
        if self.schedule_policy not in SCHEDULE_POLICIES:
            raise ValueError(f"schedule_policy must be one of {SCHEDULE_POLICIES}, got {self.schedule_policy!r}")
        if self.quantization is not None and self.quantization not in QUANTIZATION_METHODS:
            raise ValueError(f"quantization must be one of {QUANTIZATION_METHODS}, got {self.quantization!r}")
        if self.load_format not in LOAD_FORMATS:
            raise ValueError(f"load_format must be one of {LOAD_FORMATS}, got {self.load_format!r}")
        if self.model_impl not in MODEL_IMPLS:
            raise ValueError(f"model_impl must be one of {MODEL_IMPLS}, got {self.model_impl!r}")
        if not 0.0 < self.mem_fraction_static < 1.0:
            raise ValueError(f"mem_fraction_static must be in (0, 1), got {self.mem_fraction_static}")
        for name in ("max_running_requests", "max_total_tokens", "context_length", "max_queued_requests"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.stream_interval < 1:
            raise ValueError(f"stream_interval must be >= 1, got {self.stream_interval}")
        if not self.watchdog_timeout > 0:
            raise ValueError(f"watchdog_timeout must be positive, got {self.watchdog_timeout}")
        if not self.graceful_shutdown_timeout >= 0:
            raise ValueError(f"graceful_shutdown_timeout must be >= 0, got {self.graceful_shutdown_timeout}")
        if self.tp_size < 1:
            raise ValueError(f"--tp-size must be >= 1, got {self.tp_size}")
        if self.dp_size < 1:
            raise ValueError(f"--dp-size must be >= 1, got {self.dp_size}")
        if self.load_balance_method not in LOAD_BALANCE_METHODS:
            raise ValueError(f"--load-balance-method must be one of {LOAD_BALANCE_METHODS}, "
                             f"got {self.load_balance_method!r}")
        if self.base_gpu_id < 0:
            raise ValueError(f"--base-gpu-id must be >= 0, got {self.base_gpu_id}")
        self._validate_nodes()
        self._validate_speculative()
        validate_lora_args(self)

    def _validate_nodes(self) -> None:
        if self.nnodes < 1:
            raise ValueError(f"--nnodes must be >= 1, got {self.nnodes}")
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"--node-rank must be in [0, --nnodes={self.nnodes}), got {self.node_rank}")
        if self.dist_init_addr is not None:
            split_host_port(self.dist_init_addr)
        if self.nnodes == 1:
            return
        if self.tp_size % self.nnodes:
            raise ValueError(f"--tp-size {self.tp_size} must be a multiple of --nnodes {self.nnodes} "
                             f"(every node runs the same number of ranks)")
        if self.dist_init_addr is None:
            raise ValueError("--nnodes > 1 needs --dist-init-addr HOST:PORT (node 0's address and a free "
                             "port, the same on every node)")
        if self.dp_size > 1:
            raise ValueError("--dp-size > 1 with --nnodes > 1 is not supported: run one multi-node "
                             "tensor-parallel server per replica behind a load balancer")

    def _validate_speculative(self) -> None:
        algo = self.speculative_algorithm
        if algo is None:
            return
        if algo not in SPECULATIVE_ALGORITHMS:
            raise ValueError(f"--speculative-algorithm must be one of {SPECULATIVE_ALGORITHMS}, got {algo!r}")
        if algo == "DRAFT" and not self.speculative_draft_model_path:
            raise ValueError("--speculative-algorithm DRAFT needs --speculative-draft-model-path (a small checkpoint "
                             "with the target's tokenizer)")
        if algo == "EAGLE":
            self._validate_eagle()
        if self.tp_size > 1:
            raise ValueError("speculative decoding with --tp-size > 1 is not supported yet; drop one of them")
        if self.speculative_num_draft_tokens is None:
            self.speculative_num_draft_tokens = 8
        if self.speculative_num_draft_tokens < 1:
            raise ValueError(f"--speculative-num-draft-tokens must be >= 1, got {self.speculative_num_draft_tokens}")
        lo, hi = self.speculative_ngram_min_match_window_size, self.speculative_ngram_max_match_window_size
        if not 1 <= lo <= hi:
            raise ValueError(f"NGRAM match windows need 1 <= --speculative-ngram-min-match-window-size ({lo}) "
                             f"<= --speculative-ngram-max-match-window-size ({hi})")
        if self.speculative_disable_batch_size < 0:
            raise ValueError(f"--speculative-disable-batch-size must be >= 0, got {self.speculative_disable_batch_size}")

    def _validate_eagle(self) -> None:
        if not self.speculative_draft_model_path:
            raise ValueError("--speculative-algorithm EAGLE needs --speculative-draft-model-path (an EAGLE, EAGLE-2 "
                             "or EAGLE-3 head trained for the target)")
        # Defaults: a tree of depth 5 with 4 branches per level, 8 verified tokens (root + 7 nodes).
        defaults = {"speculative_num_steps": 5, "speculative_eagle_topk": 4, "speculative_num_draft_tokens": 8}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        for name in defaults:
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.speculative_disable_batch_size < 1:
            raise ValueError("--speculative-algorithm EAGLE needs --speculative-disable-batch-size >= 1 (the "
                             "largest batch that speculates: branch rows are reserved for it)")

    @property
    def ranks_per_node(self) -> int:
        return self.tp_size // self.nnodes

    def local_gpu(self, tp_rank: int) -> int:
        """The CUDA device index TP rank `tp_rank` uses on its node."""
        return self.base_gpu_id + tp_rank % self.ranks_per_node

    # ----- CLI -----
    @staticmethod
    def add_cli_args(parser: argparse.ArgumentParser) -> None:
        for f in dataclasses.fields(ServerArgs):
            flag = "--" + f.name.replace("_", "-")
            help_text = f.metadata.get("help", "")
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.type in ("bool", bool):
                parser.add_argument(flag, action="store_true", help=help_text)
                continue
            kwargs: dict = {"default": default, "help": f"{help_text} (default: {default})"}
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
            kwargs["type"] = _cli_type(f.type)
            if "nargs" in f.metadata:
                kwargs["nargs"] = f.metadata["nargs"]
            if f.name == "model_path":
                kwargs["required"] = True
            parser.add_argument(flag, **kwargs)

    @classmethod
    def from_cli_args(cls, args: argparse.Namespace) -> "ServerArgs":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names})

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _cli_type(type_name: Any):
    text = str(type_name)
    if "int" in text:
        return int
    if "float" in text:
        return float
    return str


def split_host_port(addr: str) -> tuple:
    """'host:port' (IPv6 as '[::1]:port') -> (host, port); ValueError naming the problem."""
    host, sep, port = addr.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--dist-init-addr must be HOST:PORT (e.g. 10.0.0.1:29500), got {addr!r}")
    return host, int(port)


def resolve_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu; an explicit 'cuda' must be usable here."""
    if device == "cpu":
        return device
    import torch

    available = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if available else "cpu"
    if not available:
        build = f"torch {torch.__version__} was built without CUDA" if torch.version.cuda is None else (
            "no CUDA device is visible (check the driver and CUDA_VISIBLE_DEVICES)")
        raise ValueError(f"--device {device}: CUDA is not available ({build}); use --device cpu or --device auto")
    return device


@dataclass
class PortArgs:
    """ZMQ ipc endpoints connecting the tokenizer manager, scheduler and detokenizer.

    The sockets live in a private temporary directory (`ipc_dir`); whoever ends the runtime
    removes it (`remove_ipc_dir`): the launcher on every exit path, a child orphaned by its
    parent's death on its way out."""

    tokenizer_ipc: str  # detokenizer -> tokenizer manager
    scheduler_ipc: str  # tokenizer manager -> scheduler
    detokenizer_ipc: str  # scheduler -> detokenizer
    ipc_dir: Optional[str] = None
    # Tensor parallelism: where the ranks' process group meets (a file:// in ipc_dir).
    tp_init_method: Optional[str] = None

    def for_replica(self, replica: int) -> "PortArgs":
        """The endpoints of data-parallel replica `replica`: its own scheduler socket (replica 0
        keeps the plain one), the shared detokenizer and tokenizer sockets."""
        if replica == 0:
            return self
        return dataclasses.replace(self, scheduler_ipc=f"{self.scheduler_ipc}-dp{replica}", tp_init_method=None)

    @staticmethod
    def new(tmp_dir: Optional[str] = None) -> "PortArgs":
        import tempfile

        base = tempfile.mkdtemp(prefix="sglang-ipc-", dir=tmp_dir)
        return PortArgs(
            tokenizer_ipc=f"ipc://{os.path.join(base, 'tokenizer')}",
            scheduler_ipc=f"ipc://{os.path.join(base, 'scheduler')}",
            detokenizer_ipc=f"ipc://{os.path.join(base, 'detokenizer')}",
            ipc_dir=base,
        )

    def remove_ipc_dir(self) -> None:
        if self.ipc_dir is not None:
            import shutil

            shutil.rmtree(self.ipc_dir, ignore_errors=True)
