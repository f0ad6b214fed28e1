"""Tiny random EAGLE heads in the published checkpoint layouts (tests only).

`write_eagle_head(target_dir, out_dir, kind)` writes config.json + model.safetensors for a head
that fits the target checkpoint at `target_dir`:
- kind "eagle" (EAGLE-1/2, e.g. yuhuili/EAGLE-LLaMA3-Instruct-8B): architectures
  ["LlamaForCausalLM"], one layer; tensors fc.weight [H, 2H] (+ fc.bias with "bias": true),
  layers.0.self_attn.{q,k,v,o}_proj.weight, layers.0.mlp.{gate,up,down}_proj.weight,
  layers.0.post_attention_layernorm.weight (layer 0 has no input norm); embed_tokens.weight only
  with `ship_embed`.
- kind "eagle3" (EAGLE-3, e.g. yuhuili/EAGLE3-LLaMA3.1-Instruct-8B): architectures
  ["LlamaForCausalLMEagle3"], "draft_vocab_size"; tensors midlayer.self_attn.{q,k,v}_proj.weight
  [.., 2H], midlayer.self_attn.o_proj.weight, midlayer.mlp.*, midlayer.{input_layernorm,
  hidden_norm,post_attention_layernorm}.weight, fc.weight [H, 3H], norm.weight,
  lm_head.weight [draft_vocab, H], d2t [draft_vocab] int64 (target id = draft id + d2t) and
  t2d [vocab] bool.
"""

from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import torch

KINDS = ("eagle", "eagle3")


def _target_config(target_dir: str) -> dict:
    with open(os.path.join(target_dir, "config.json"), encoding="utf-8") as f:
        return json.load(f)


def _layer_tensors(prefix: str, cfg: dict, attn_in: int, gen: torch.Generator, std: float) -> Dict[str, torch.Tensor]:
    h, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    inter = cfg["intermediate_size"]

    def rnd(*shape):
        return torch.randn(shape, generator=gen) * std

    return {
        f"{prefix}.self_attn.q_proj.weight": rnd(heads * head_dim, attn_in),
        f"{prefix}.self_attn.k_proj.weight": rnd(kv_heads * head_dim, attn_in),
        f"{prefix}.self_attn.v_proj.weight": rnd(kv_heads * head_dim, attn_in),
        f"{prefix}.self_attn.o_proj.weight": rnd(h, heads * head_dim),
        f"{prefix}.mlp.gate_proj.weight": rnd(inter, h),
        f"{prefix}.mlp.up_proj.weight": rnd(inter, h),
        f"{prefix}.mlp.down_proj.weight": rnd(h, inter),
        f"{prefix}.post_attention_layernorm.weight": 1.0 + rnd(h),
    }


def write_eagle_config(target_dir: str, out_dir: str, kind: str = "eagle") -> str:
    """config.json only (no weights): a head for `--load-format dummy` benchmarks at real shapes."""
    cfg = _head_config(_target_config(target_dir), kind)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return out_dir


def _head_config(target: dict, kind: str, fc_bias: bool = False, draft_vocab_size: Optional[int] = None) -> dict:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = {k: target[k] for k in ("hidden_size", "intermediate_size", "num_attention_heads", "rms_norm_eps",
                                  "vocab_size", "max_position_embeddings", "hidden_act") if k in target}
    for k in ("num_key_value_heads", "head_dim", "rope_theta", "rope_scaling", "rope_parameters", "bos_token_id",
              "eos_token_id"):
        if target.get(k) is not None:
            cfg[k] = target[k]
    cfg.update({"model_type": "llama", "num_hidden_layers": 1, "torch_dtype": "float32", "tie_word_embeddings": False})
    if kind == "eagle":
        cfg.update({"architectures": ["LlamaForCausalLM"], "bias": fc_bias})
    else:
        cfg.update({"architectures": ["LlamaForCausalLMEagle3"],
                    "draft_vocab_size": draft_vocab_size or target["vocab_size"]})
    return cfg


def write_eagle_head(target_dir: str, out_dir: str, kind: str = "eagle", seed: int = 0, std: float = 0.05,
                     ship_embed: bool = False, fc_bias: bool = False, draft_vocab_size: Optional[int] = None,
                     aux_layers: Optional[list] = None) -> str:
    """A random `kind` head for the target at `target_dir`, written to `out_dir` (returned)."""
    from safetensors.torch import save_file

    target = _target_config(target_dir)
    gen = torch.Generator().manual_seed(seed)
    h, vocab = target["hidden_size"], target["vocab_size"]
    cfg = _head_config(target, kind, fc_bias, draft_vocab_size)
    tensors: Dict[str, torch.Tensor] = {}
    if kind == "eagle":
        tensors["fc.weight"] = torch.randn((h, 2 * h), generator=gen) * std
        if fc_bias:
            tensors["fc.bias"] = torch.randn((h,), generator=gen) * std
        tensors.update(_layer_tensors("layers.0", cfg, h, gen, std))
    else:
        dv = cfg["draft_vocab_size"]
        if aux_layers is not None:
            cfg["eagle_config"] = {"eagle_aux_hidden_state_layer_ids": list(aux_layers)}
        tensors.update(_layer_tensors("midlayer", cfg, 2 * h, gen, std))
        tensors["midlayer.input_layernorm.weight"] = 1.0 + torch.randn((h,), generator=gen) * std
        tensors["midlayer.hidden_norm.weight"] = 1.0 + torch.randn((h,), generator=gen) * std
        tensors["fc.weight"] = torch.randn((h, 3 * h), generator=gen) * std
        tensors["norm.weight"] = 1.0 + torch.randn((h,), generator=gen) * std
        tensors["lm_head.weight"] = torch.randn((dv, h), generator=gen) * std
        # The draft vocabulary: every other target id from 0 (a strict subset when dv < vocab).
        draft_to_target = torch.arange(dv, dtype=torch.int64) * max(vocab // dv, 1)
        tensors["d2t"] = draft_to_target - torch.arange(dv, dtype=torch.int64)
        t2d = torch.zeros(vocab, dtype=torch.bool)
        t2d[draft_to_target] = True
        tensors["t2d"] = t2d
    if ship_embed:
        tensors["embed_tokens.weight"] = torch.randn((vocab, h), generator=gen) * std
    os.makedirs(out_dir, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "model.safetensors"))
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)
    return out_dir


def fit_eagle3_readout(target_dir: str, out_dir: str, seqs: List[List[int]], steps: int = 300,
                       seed: int = 0) -> str:
    """An EAGLE-3 head that actually predicts (tests of acceptance): its attention and MLP add
    nothing (o_proj, down_proj zero), fc passes the first tapped stream through, and lm_head is
    fitted (cross-entropy, Adam) so that norm(stream at p) scores token p + 2 — on texts the
    target memorized, the context up to p fixes both next tokens. Deeper draft steps feed the
    head's output back, so they mostly repeat; depth 1 is what this head gets right."""
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM

    write_eagle_head(target_dir, out_dir, "eagle3", seed=seed)
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    cfg = _target_config(target_dir)
    h, n_layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    tap = min(2, n_layers - 1)  # the first of the default taps (2, L // 2, L - 3), clamped
    xs, ys = [], []
    with torch.no_grad():
        for ids in seqs:
            if len(ids) < 3:
                continue
            out = target(input_ids=torch.tensor([ids]), output_hidden_states=True)
            stream = out.hidden_states[tap][0]  # the residual stream entering layer `tap`
            xs.append(stream[:-2])
            ys.append(torch.tensor(ids[2:]))
    x, y = torch.cat(xs), torch.cat(ys)
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + cfg.get("rms_norm_eps", 1e-6))
    torch.manual_seed(seed)
    head = torch.nn.Linear(h, cfg["vocab_size"], bias=False)
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y)
        loss.backward()
        opt.step()
    tensors = load_file(os.path.join(out_dir, "model.safetensors"))
    tensors["lm_head.weight"] = head.weight.detach().clone()
    tensors["midlayer.self_attn.o_proj.weight"].zero_()
    tensors["midlayer.mlp.down_proj.weight"].zero_()
    fc = torch.zeros((h, 3 * h))
    fc[:, :h] = torch.eye(h)
    tensors["fc.weight"] = fc
    tensors["midlayer.post_attention_layernorm.weight"].fill_(1.0)
    tensors["norm.weight"].fill_(1.0)
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(out_dir, "model.safetensors"))
    return out_dir


class EagleOneTwin(torch.nn.Module):
    """The EAGLE-1 head's math on transformers' Llama layers: an independent reference for our
    LlamaForCausalLMEagle, and what `fit_eagle_head` trains. Inputs per position t: the token at
    t + 1 and the target's feature at t; output: the predicted feature at t + 1."""

    def __init__(self, target_config, embed_weight: torch.Tensor, bias: bool = False):
        super().__init__()
        import copy

        from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

        cfg = copy.deepcopy(target_config)
        cfg.num_hidden_layers = 1
        cfg._attn_implementation = "eager"
        h = cfg.hidden_size
        self.fc = torch.nn.Linear(2 * h, h, bias=bias)
        self.layer = LlamaDecoderLayer(cfg, layer_idx=0)
        self.layer.input_layernorm = torch.nn.Identity()  # EAGLE-1's first layer has no input norm
        self.rotary = LlamaRotaryEmbedding(cfg)
        self.register_buffer("embed", embed_weight.detach().float().clone(), persistent=False)

    def forward(self, next_tokens: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """next_tokens [B, T], feats [B, T, H] -> [B, T, H]."""
        z = self.fc(torch.cat([self.embed[next_tokens], feats], dim=-1))
        t = z.shape[1]
        positions = torch.arange(t, device=z.device)[None].expand(z.shape[0], -1)
        mask = torch.full((t, t), float("-inf"), device=z.device).triu(1)[None, None].expand(z.shape[0], 1, t, t)
        out = self.layer(z, attention_mask=mask, position_ids=positions,
                         position_embeddings=self.rotary(z, positions))
        return out[0] if isinstance(out, tuple) else out

    def published_tensors(self) -> Dict[str, torch.Tensor]:
        """The head in the EAGLE-1 checkpoint layout."""
        out = {f"layers.0.{k}": v for k, v in self.layer.state_dict().items() if "input_layernorm" not in k}
        out.update({f"fc.{k}": v for k, v in self.fc.state_dict().items()})
        return {k: v.detach().float().contiguous() for k, v in out.items() if "rotary" not in k}
