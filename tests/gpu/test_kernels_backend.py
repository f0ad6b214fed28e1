"""The CUDA attention backends (triton; flashinfer where installed) vs plain-torch attention (the
float64 twins) over the same KV pool: extend on cached prefixes, MIXED, decode, and a decode step
captured in a CUDA graph."""

from types import SimpleNamespace
from typing import List, Sequence

import importlib.util

import pytest
import torch

pytest.importorskip("triton")

from sglang.kernels.ref.decode_attention import decode_attention_fwd as decode_ref  # noqa: E402
from sglang.kernels.ref.extend_attention import extend_attention_fwd as extend_ref  # noqa: E402
from sglang.runtime.layers.attention.radix_attention import RadixAttention  # noqa: E402
from sglang.runtime.layers.attention.registry import get_attention_backend_class  # noqa: E402
from sglang.runtime.layers.attention.triton_backend import TritonAttnBackend  # noqa: E402
from sglang.runtime.mem_cache.memory_pool import KVPool, ReqToTokenPool  # noqa: E402
from sglang.runtime.model_executor.forward_batch import ForwardBatch, ForwardMode  # noqa: E402
from tests.gpu.kernel_checks import assert_close  # noqa: E402

H, KVH, D = 16, 4, 128
DTYPE = torch.bfloat16
LAYERS = [
    RadixAttention(H, D, D**-0.5, KVH, layer_id=0),
    RadixAttention(H, D, 4 * D**-0.5, KVH, layer_id=1, logit_cap=5.0),
    RadixAttention(H, D, D**-0.5, KVH, layer_id=2, sliding_window_size=24),
]


_NO_FLASHINFER = pytest.mark.skipif(importlib.util.find_spec("flashinfer") is None, reason="flashinfer is not installed")
# flashinfer-tc: the same backend with decode forced onto its tensor-core kernel.
BACKENDS = ["triton", pytest.param("flashinfer", marks=_NO_FLASHINFER),
            pytest.param("flashinfer-tc", marks=_NO_FLASHINFER)]


def _backend(name: str, runner, monkeypatch):
    monkeypatch.setenv("SGLANG_FLASHINFER_DECODE_TENSOR_CORES", "1" if name.endswith("-tc") else "0")
    backend = get_attention_backend_class(name.removesuffix("-tc"))(runner)
    if name.startswith("flashinfer"):
        assert backend.use_tensor_cores == name.endswith("-tc")
    return backend


def _runner():
    return SimpleNamespace(
        device="cuda",
        dtype=DTYPE,
        model=torch.nn.ModuleList(LAYERS),  # the flashinfer backend plans one wrapper per kind of layer
        req_to_token_pool=ReqToTokenPool(8, 512, "cuda"),
        kv_pool=KVPool(2048, DTYPE, KVH, D, len(LAYERS), "cuda"),
        model_config=SimpleNamespace(num_attention_heads=H),
        server_args=SimpleNamespace(tp_size=1),
    )


class Batch:
    """Host-side bookkeeping of a few requests: their table rows, lengths and next free slot."""

    def __init__(self, runner, prefix_lens: List[int], rows: Sequence[int] = (3, 0, 5, 1)):
        self.runner, self.rows, self.lens, self.next_slot = runner, list(rows)[: len(prefix_lens)], [], 1
        pool = runner.kv_pool
        for row, n in zip(self.rows, prefix_lens):
            slots = self._alloc(n)
            runner.req_to_token_pool.write(row, 0, n, slots)
            for layer in range(len(LAYERS)):  # cached prefix from an earlier (imagined) pass
                pool.k_buffer[layer][slots] = torch.randn(n, KVH, D, device="cuda").to(DTYPE)
                pool.v_buffer[layer][slots] = torch.randn(n, KVH, D, device="cuda").to(DTYPE)
            self.lens.append(n)

    def _alloc(self, n: int) -> torch.Tensor:
        slots = torch.arange(self.next_slot, self.next_slot + n, device="cuda").flip(0)  # non-monotone
        self.next_slot += n
        return slots

    def step(self, ext: List[int], mode: ForwardMode) -> ForwardBatch:
        out_loc = []
        for i, (row, n) in enumerate(zip(self.rows, ext)):
            slots = self._alloc(n)
            self.runner.req_to_token_pool.write(row, self.lens[i], self.lens[i] + n, slots)
            self.lens[i] += n
            out_loc.append(slots)
        dev = lambda xs: torch.tensor(xs, device="cuda")  # noqa: E731
        ext_t = dev(ext)
        fb = ForwardBatch(
            forward_mode=mode, batch_size=len(ext), input_ids=torch.zeros(sum(ext), dtype=torch.int64, device="cuda"),
            positions=torch.zeros(sum(ext), dtype=torch.int64, device="cuda"), req_pool_indices=dev(self.rows),
            seq_lens=dev(self.lens), out_cache_loc=torch.cat(out_loc), seq_lens_cpu=list(self.lens),
            req_to_token_pool=self.runner.req_to_token_pool, kv_pool=self.runner.kv_pool,
        )
        if mode.is_extend():
            fb.extend_seq_lens, fb.extend_start_loc = ext_t, torch.cumsum(ext_t, 0) - ext_t
            fb.extend_seq_lens_cpu = list(ext)
            fb.extend_prefix_lens_cpu = [n - e for n, e in zip(self.lens, ext)]
            fb.extend_prefix_lens = dev(fb.extend_prefix_lens_cpu)
        return fb


def _qkv(n: int):
    return [torch.randn(n, h * D, device="cuda").to(DTYPE) for h in (H, KVH, KVH)]


def _reference(layer, fb: ForwardBatch, q, k, v) -> torch.Tensor:
    pool = fb.kv_pool
    kb, vb = pool.k_buffer[layer.layer_id].double(), pool.v_buffer[layer.layer_id].double()
    table = fb.req_to_token_pool.req_to_token
    o = torch.empty(q.shape[0], H, D, dtype=torch.float64, device="cuda")
    common = dict(sm_scale=layer.scaling, logit_cap=layer.logit_cap, sliding_window=layer.sliding_window_size)
    if fb.forward_mode.is_decode():
        decode_ref(q.view(-1, H, D).double(), kb, vb, o, table, fb.req_pool_indices, fb.seq_lens, **common)
    else:
        extend_ref(q.view(-1, H, D).double(), k.view(-1, KVH, D).double(), v.view(-1, KVH, D).double(), o, kb, vb,
                   table, fb.req_pool_indices, fb.seq_lens, fb.extend_seq_lens, fb.extend_start_loc,
                   max(fb.extend_seq_lens_cpu), **common)
    return o.view(-1, H * D)


def _run_and_check(backend, fb: ForwardBatch, what: str) -> None:
    fb.attn_backend = backend
    backend.init_forward_metadata(fb)
    for layer in LAYERS:
        q, k, v = _qkv(fb.out_cache_loc.shape[0])
        out = layer(q, k, v, fb)
        assert out.shape == (q.shape[0], H * D)
        saved = fb.kv_pool.k_buffer[layer.layer_id][fb.out_cache_loc]
        assert torch.equal(saved, k.view(-1, KVH, D)), f"{what}: new K must be saved at out_cache_loc"
        assert_close(out, _reference(layer, fb, q, k, v), what=f"{what} layer {layer.layer_id}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", BACKENDS)
def test_extend_mixed_then_decode(name, monkeypatch):
    runner = _runner()
    backend = _backend(name, runner, monkeypatch)
    batch = Batch(runner, prefix_lens=[0, 37, 100, 5])
    _run_and_check(backend, batch.step([60, 9, 130, 1], ForwardMode.EXTEND), "extend")
    _run_and_check(backend, batch.step([1, 1, 20, 1], ForwardMode.MIXED), "mixed")
    for step in range(3):
        _run_and_check(backend, batch.step([1, 1, 1, 1], ForwardMode.DECODE), f"decode {step}")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", BACKENDS)
def test_decode_cuda_graph_replay_follows_new_inputs(name, monkeypatch):
    runner = _runner()
    backend = _backend(name, runner, monkeypatch)
    backend.init_cuda_graph_state(max_bs=8)
    batch = Batch(runner, prefix_lens=[50, 3, 200])
    layer = LAYERS[2]  # sliding window: the visible range moves with seq_len at replay
    fb = batch.step([1, 1, 1], ForwardMode.DECODE)
    static = _qkv(3)
    backend.init_forward_metadata_capture(fb)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm up (compiles the kernels) outside capture
        backend.forward_decode(*static, layer, fb)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = backend.forward_decode(*static, layer, fb)
    for step in range(3):
        nxt = batch.step([1, 1, 1], ForwardMode.DECODE)  # new slots and lengths, copied into the static inputs
        fb.seq_lens.copy_(nxt.seq_lens)
        fb.seq_lens_cpu = nxt.seq_lens_cpu  # host-planning backends read these at replay
        fb.out_cache_loc.copy_(nxt.out_cache_loc)
        for buf, new in zip(static, _qkv(3)):
            buf.copy_(new)
        backend.init_forward_metadata_replay(fb)
        out.fill_(float("nan"))
        graph.replay()
        assert_close(out, _reference(layer, fb, *static), what=f"graph replay {step}")


def test_rejects_cpu_runner():
    runner = SimpleNamespace(device="cpu")
    with pytest.raises(ValueError, match="torch_native"):
        TritonAttnBackend(runner)
