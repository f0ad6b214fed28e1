"""M-RoPE (Qwen2-VL's three-component rotary embedding) against a direct construction."""

from __future__ import annotations

import pytest
import torch
from transformers import Qwen2VLTextConfig

from sglang.runtime.layers.mrope import MRotaryEmbedding
from sglang.runtime.layers.rotary_embedding import RotaryEmbedding, get_rope, rope_params_from_config
from sglang.runtime.mem_cache.memory_pool import KVPool

HEAD, SECTIONS, BASE = 16, [2, 3, 3], 10000.0


def _mrope() -> MRotaryEmbedding:
    return get_rope(HEAD, HEAD, 256, BASE, {"rope_type": "default", "mrope_section": SECTIONS}, torch.float32)


def _reference(positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Rotate x [N, heads, HEAD]: frequency j turns by component (section of j) % 3 of the position."""
    inv_freq = 1.0 / BASE ** (torch.arange(0, HEAD, 2, dtype=torch.float32) / HEAD)
    component = torch.repeat_interleave(torch.arange(3), torch.tensor(SECTIONS))
    angles = positions.T.float()[:, component] * inv_freq  # [N, HEAD/2]: per frequency, its component
    cos, sin = torch.cat([angles.cos()] * 2, -1)[:, None], torch.cat([angles.sin()] * 2, -1)[:, None]
    rotated_half = torch.cat([-x[..., HEAD // 2:], x[..., :HEAD // 2]], dim=-1)
    return x * cos + rotated_half * sin


def test_config_picks_mrope_for_both_config_styles() -> None:
    new = Qwen2VLTextConfig(rope_parameters={"rope_type": "default", "mrope_section": SECTIONS, "rope_theta": BASE})
    assert rope_params_from_config(new) == (BASE, {"rope_type": "default", "mrope_section": SECTIONS})
    old = type("Old", (), {"rope_theta": BASE, "rope_scaling": {"type": "mrope", "mrope_section": SECTIONS},
                           "max_position_embeddings": 64})()
    assert rope_params_from_config(old) == (BASE, {"rope_type": "default", "mrope_section": SECTIONS})
    assert isinstance(_mrope(), MRotaryEmbedding)
    assert type(get_rope(HEAD, HEAD, 64, BASE, None)) is RotaryEmbedding


def test_three_components_rotate_their_sections() -> None:
    rope = _mrope()
    gen = torch.Generator().manual_seed(0)
    n = 11
    positions = torch.randint(0, 200, (3, n), generator=gen)
    q, k = torch.randn(n, 4 * HEAD, generator=gen), torch.randn(n, 2 * HEAD, generator=gen)
    q_rot, k_rot = rope(positions, q, k)
    torch.testing.assert_close(q_rot.view(n, 4, HEAD), _reference(positions, q.view(n, 4, HEAD)))
    torch.testing.assert_close(k_rot.view(n, 2, HEAD), _reference(positions, k.view(n, 2, HEAD)))
    # Components that differ really matter: swapping height and width changes the result.
    swapped = positions[[0, 2, 1]]
    assert not torch.allclose(rope(swapped, q, k)[0], q_rot)


def test_equal_components_and_1d_positions_are_plain_rope() -> None:
    rope, plain = _mrope(), get_rope(HEAD, HEAD, 256, BASE, None, torch.float32)
    gen = torch.Generator().manual_seed(1)
    pos = torch.randint(0, 200, (9,), generator=gen)
    q, k = torch.randn(9, 4 * HEAD, generator=gen), torch.randn(9, 2 * HEAD, generator=gen)
    expected = plain(pos, q, k)
    for got in (rope(pos, q, k), rope(pos.expand(3, -1), q, k)):
        torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
        torch.testing.assert_close(got[1], expected[1], rtol=0, atol=0)


def test_store_kv_writes_rotated_keys_for_3d_positions() -> None:
    rope = _mrope()
    pool = KVPool(16, torch.float32, 2, HEAD, 1, "cpu")
    gen = torch.Generator().manual_seed(2)
    positions = torch.randint(0, 100, (3, 5), generator=gen)
    q, k, v = (torch.randn(5, h * HEAD, generator=gen) for h in (4, 2, 2))
    loc = torch.tensor([3, 7, 1, 9, 12])
    q_rot, k_rot = rope.forward_and_store_kv(positions, q, k, v, pool, 0, loc)
    torch.testing.assert_close(pool.get_key_buffer(0)[loc].reshape(5, -1), k_rot)
    torch.testing.assert_close(pool.get_value_buffer(0)[loc].reshape(5, -1), v)
    torch.testing.assert_close(q_rot, rope(positions, q, k)[0])


def test_bad_sections_and_positions_are_rejected() -> None:
    with pytest.raises(ValueError, match="must sum to 8"):
        get_rope(HEAD, HEAD, 64, BASE, {"rope_type": "default", "mrope_section": [2, 2, 2]})
    with pytest.raises(ValueError, match=r"\[N\] or \[3, N\]"):
        _mrope()(torch.zeros(2, 4, dtype=torch.int64), torch.zeros(4, HEAD), torch.zeros(4, HEAD))
