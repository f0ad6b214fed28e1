"""EAGLE speculation end to end in the scheduler (CPU, float32): heads written in the published
EAGLE-1/2 and EAGLE-3 layouts load and run; greedy outputs are token-identical to plain decoding
(64 copy-heavy prompts, batched and alone, radix off, chunked prefill, no overlap, small pools,
chains and trees, stop strings, JSON schema); a head fitted to the target gets drafts accepted;
the KV pool is consistent after every step and free at the end."""

from __future__ import annotations

import json

import pytest

from sglang.runtime.server_args import ServerArgs
from sglang.testing.fixtures import tiny_model_dir, trained_model_dir
from sglang.testing.scheduler_harness import SchedulerHarness
from sglang.testing.tiny_eagle import fit_eagle3_readout, write_eagle_head
from sglang.testing.trained_model import encode_document, trained_corpus
from tests.speculative.copy_prompts import copy_prompts
from tests.speculative.test_ngram_exactness import NEW_TOKENS, generate


@pytest.fixture(scope="module")
def model_path() -> str:
    return trained_model_dir()


@pytest.fixture(scope="module")
def tokenizer(model_path):
    return SchedulerHarness(model_path).tokenizer


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return copy_prompts(tokenizer, 64)


@pytest.fixture(scope="module")
def reference(model_path, prompts):
    return generate(model_path, prompts)[0]


@pytest.fixture(scope="module")
def fitted_head(model_path, tokenizer, tmp_path_factory) -> str:
    tok = tokenizer._tokenizer if hasattr(tokenizer, "_tokenizer") else tokenizer.backend_tokenizer
    docs = [encode_document(tok, d) for d in trained_corpus()]
    return fit_eagle3_readout(model_path, str(tmp_path_factory.mktemp("eagle3_fit")), docs)


def eagle_args(head: str, **kw) -> dict:
    return {"speculative_algorithm": "EAGLE", "speculative_draft_model_path": head,
            "speculative_disable_batch_size": 64, **kw}


def assert_clean(h: SchedulerHarness) -> None:
    """No head state left; every scratch row back to its prefix copy only (pool checks: generate)."""
    assert not h.scheduler.spec.drafter.states


@pytest.mark.parametrize("topk", [1, 4])
def test_fitted_head_is_exact_and_accepted(model_path, prompts, reference, fitted_head, topk):
    outs, h = generate(model_path, prompts, **eagle_args(fitted_head, speculative_eagle_topk=topk))
    assert outs == reference
    state = h.scheduler.state()
    assert state["spec_accepted_tokens"] > 100, state
    assert max(state["spec_accept_length_counts"]) >= 3  # several drafts of one tree accepted
    assert state["decode_steps"] < NEW_TOKENS - 1
    assert_clean(h)


@pytest.mark.parametrize("head_kw", [
    {"kind": "eagle"},
    {"kind": "eagle", "ship_embed": True, "fc_bias": True},
    {"kind": "eagle3", "draft_vocab_size": 500},
    {"kind": "eagle3", "aux_layers": [0, 1, 1]},
], ids=["eagle", "eagle-embed-bias", "eagle3-draft-vocab", "eagle3-aux-layers"])
def test_random_heads_load_and_change_nothing(model_path, prompts, reference, head_kw, tmp_path):
    head = write_eagle_head(model_path, str(tmp_path / "head"), **head_kw)
    outs, h = generate(model_path, prompts[:16], **eagle_args(head))
    assert outs == reference[:16]
    assert h.scheduler.state()["spec_verify_passes"] > 0
    assert_clean(h)


@pytest.mark.parametrize("overrides", [
    {"alone": True},
    {"disable_radix_cache": True},
    {"chunked_prefill_size": 7},
    {"disable_overlap_schedule": True},
    {"speculative_num_draft_tokens": 2},
    {"speculative_num_steps": 1, "speculative_eagle_topk": 8},
    {"max_total_tokens": 400},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_fitted_head_under_options(model_path, prompts, reference, fitted_head, overrides):
    alone = overrides.pop("alone", False)
    outs, h = generate(model_path, prompts[:16], alone=alone, **eagle_args(fitted_head, **overrides))
    assert outs == reference[:16]
    assert h.scheduler.state()["spec_accepted_tokens"] > 0
    if "max_total_tokens" in overrides:
        assert h.scheduler.stats["num_retractions"] > 0
    assert_clean(h)


def test_stop_strings(model_path, prompts, fitted_head):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 0, "stop": [": ", "\n"]}
    ref, h0 = generate(model_path, prompts[:24], params=params)
    outs, h = generate(model_path, prompts[:24], params=params, **eagle_args(fitted_head))
    assert outs == ref
    assert ([h.results[str(i)].finished_reason for i in range(24)]
            == [h0.results[str(i)].finished_reason for i in range(24)])
    assert any(r.finished_reason["type"] == "stop" for r in h.results.values())
    assert_clean(h)


def test_json_schema(model_path, tokenizer, fitted_head):
    schema = json.dumps({"type": "object", "properties": {"name": {"type": "string", "maxLength": 10},
                                                          "age": {"enum": [27, 31]}}, "required": ["name", "age"]})
    ids = [tokenizer.encode(f'{{"name": "Alice", "age": 31}}\n{{"name": "B{i}') for i in range(6)]
    params = {"max_new_tokens": 40, "temperature": 0, "json_schema": schema}
    ref, _ = generate(model_path, ids, params=params, disable_jump_forward=True)
    outs, h = generate(model_path, ids, params=params, disable_jump_forward=True, **eagle_args(fitted_head))
    assert outs == ref
    for out in outs:
        json.loads(tokenizer.decode(out, skip_special_tokens=True))
    assert_clean(h)


def test_temperature_one(model_path, prompts, fitted_head):
    params = {"max_new_tokens": NEW_TOKENS, "temperature": 1.0, "ignore_eos": True, "top_p": 0.95}
    outs, h = generate(model_path, prompts[:16], params=params, **eagle_args(fitted_head))
    assert all(len(o) == NEW_TOKENS for o in outs)
    assert h.scheduler.state()["spec_accepted_tokens"] > 0
    assert_clean(h)


def test_output_logprobs_match_plain_decoding(model_path, prompts, fitted_head):
    from tests.speculative.test_spec_features import assert_logprobs_match

    runs = {}
    for spec in (False, True):
        h = SchedulerHarness(model_path, **(eagle_args(fitted_head) if spec else {}))
        for i, ids in enumerate(prompts[:16]):
            h.submit(str(i), input_ids=ids, params={"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True},
                     return_logprob=True, top_logprobs_num=3)
        res = h.run_until_idle()
        runs[spec] = [res[str(i)] for i in range(16)]
        if spec:
            assert h.scheduler.state()["spec_accepted_tokens"] > 0
    assert_logprobs_match(runs[False], runs[True])


def test_engine_meta_info(model_path, prompts, fitted_head):
    import sglang

    with sglang.Engine(model_path=model_path, device="cpu", random_seed=0, speculative_algorithm="EAGLE",
                       speculative_draft_model_path=fitted_head) as eng:
        out = eng.generate(input_ids=prompts[0], sampling_params={"max_new_tokens": NEW_TOKENS, "temperature": 0})
        meta = out["meta_info"]
        assert meta["spec_verify_ct"] > 0 and meta["spec_accept_token_num"] > 0
        assert meta["spec_draft_token_num"] >= meta["spec_accept_token_num"]
        assert meta["spec_verify_ct"] < meta["completion_tokens"]


def test_eagle_needs_a_head():
    with pytest.raises(ValueError, match="speculative-draft-model-path"):
        ServerArgs(model_path="x", device="cpu", speculative_algorithm="EAGLE")
    with pytest.raises(ValueError, match="speculative-eagle-topk must be >= 1"):
        ServerArgs(model_path="x", device="cpu", speculative_algorithm="EAGLE", speculative_draft_model_path="h",
                   speculative_eagle_topk=0)


def test_a_plain_checkpoint_is_not_a_head(model_path):
    with pytest.raises(ValueError, match="Qwen2ForCausalLM checkpoint; EAGLE heads supported"):
        SchedulerHarness(model_path, **eagle_args(tiny_model_dir("qwen2")))


def test_bad_d2t_is_named(model_path, tmp_path):
    from safetensors.torch import load_file, save_file

    head = write_eagle_head(model_path, str(tmp_path / "head"), "eagle3", draft_vocab_size=500)
    tensors = load_file(f"{head}/model.safetensors")
    tensors["d2t"] = tensors["d2t"][:10].clone()
    save_file(tensors, f"{head}/model.safetensors")
    with pytest.raises(ValueError, match="'d2t' has shape"):
        SchedulerHarness(model_path, **eagle_args(head))


def test_head_entries_pair_the_next_token_with_the_target_feature(model_path, prompts, fitted_head):
    """Entry p of the head's KV is computed from (token p + 1, the target's feature at p): every
    catch-up pass's rows, checked against transformers' hidden states of the final text (the
    residual stream entering the tapped layers)."""
    import torch
    from transformers import AutoModelForCausalLM

    h = SchedulerHarness(model_path, **eagle_args(fitted_head))
    drafter = h.scheduler.spec.drafter
    seen = []
    forward = drafter.runner.forward

    def record(fb):
        if fb.forward_mode.is_extend():
            seen.append((fb.input_ids.tolist(), fb.positions.tolist(), fb.spec_features.clone()))
        return forward(fb)

    drafter.runner.forward = record
    ids = prompts[0]
    h.submit("0", input_ids=ids, params={"max_new_tokens": 12, "temperature": 0, "ignore_eos": True})
    text = ids + h.run_until_idle()["0"].output_ids
    hf = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    with torch.no_grad():
        streams = hf(input_ids=torch.tensor([text]), output_hidden_states=True).hidden_states
    want = torch.cat([streams[i][0] for i in drafter.store.layer_ids], dim=-1)
    assert len(seen) >= 2 and seen[0][1][0] == 0
    covered = set()
    for tokens, positions, feats in seen:
        assert tokens == [text[p + 1] for p in positions]
        torch.testing.assert_close(feats, want[positions], atol=1e-4, rtol=1e-4)
        covered.update(positions)
    assert covered == set(range(max(covered) + 1))  # every position's entry was computed


@pytest.mark.parametrize("params", [
    {"temperature": 1.0, "seed": 7},
    {"temperature": 0.8, "top_p": 0.9, "seed": 11, "frequency_penalty": 0.5, "repetition_penalty": 1.2},
], ids=["t1", "t0.8-topp-penalties"])
def test_seeded_sampling_equals_plain_sampling(model_path, prompts, fitted_head, params):
    """Every token the walk emits is the target's own draw at that node, with the seeded noise of
    that output position: seeded sampling gives plain sampling's tokens (penalties counting the
    branch's drafts, as plain decoding counts its outputs)."""
    params = {"max_new_tokens": NEW_TOKENS, "ignore_eos": True, **params}
    ref, _ = generate(model_path, prompts[:16], params=params)
    outs, h = generate(model_path, prompts[:16], params=params, **eagle_args(fitted_head))
    assert outs == ref
    assert h.scheduler.state()["spec_accepted_tokens"] > 0


def test_branch_rows_give_the_head_its_own_path(model_path, prompts, tmp_path):
    """A drafting row attends to the request's head entries and its own branch only: the logits
    of every row of the first two expansions equal one fresh extend pass of the head over (the
    caught-up entries + the row's path), with a random EAGLE-1 head whose attention matters."""
    import torch

    from sglang.runtime.speculative.verify_batch import extend_batch

    head = write_eagle_head(model_path, str(tmp_path / "head"), "eagle", std=0.2)
    h = SchedulerHarness(model_path, **eagle_args(head, speculative_eagle_topk=3, speculative_num_steps=3))
    drafter = h.scheduler.spec.drafter
    forward, seen, checked = drafter.runner.forward, {}, []

    def reference(tokens, feats):
        kv = drafter.kv
        row = kv.req_to_token_pool.alloc(1)
        fb = extend_batch(row, [0], [tokens], kv, all_logits=False)
        fb.spec_features = feats
        logits = forward(fb).next_token_logits[0]
        kv.allocator.free(fb.out_cache_loc.to("cpu"))
        kv.req_to_token_pool.free(row)
        return logits

    def record(fb):
        out = forward(fb)
        if fb.forward_mode.is_extend() and fb.batch_size == 1 and not checked:
            seen["catch_up"] = (fb.input_ids.tolist(), fb.positions.tolist(), fb.spec_features.clone(),
                                out.hidden_states[0].clone())
        elif fb.forward_mode.is_decode() and "catch_up" in seen and len(checked) < 6:
            tokens, positions, feats, last_hidden = seen["catch_up"]
            assert positions[0] == 0  # the first catch-up covers the whole prompt
            first = seen.get("first")
            for j, tok in enumerate(fb.input_ids.tolist()):
                if first is None:  # depth-1 nodes: their parent is the root
                    path, path_feats = [tok], [last_hidden]
                else:  # depth-2 nodes: the parent is the first-level row whose output they read
                    p = next(i for i, hid in enumerate(first[1]) if torch.equal(hid, fb.spec_features[j]))
                    path, path_feats = [first[0][p], tok], [last_hidden, first[1][p]]
                want = reference(tokens + path, torch.cat([feats, torch.stack(path_feats)]))
                # float32, decode vs extend kernels: ~1e-3 on logits of magnitude ~10 (a wrong path: O(1))
                torch.testing.assert_close(out.next_token_logits[j], want, atol=5e-3, rtol=1e-3)
                checked.append(j)
            if first is None:
                seen["first"] = (fb.input_ids.tolist(), out.hidden_states.clone())
        return out

    drafter.runner.forward = record
    h.submit("0", input_ids=prompts[1], params={"max_new_tokens": 8, "temperature": 0, "ignore_eos": True})
    h.run_until_idle()
    assert len(checked) == 6  # the three frontier rows of the first two expansions


def test_eagle1_head_matches_a_transformers_twin(model_path, prompts, tmp_path):
    """Our EAGLE-1 head (fc, a first layer without input norm, the target's lm_head) against the
    same math on transformers' Llama layers: the catch-up's last-row logits over a whole prompt,
    fed with the target's final normed hidden states."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoConfig, AutoModelForCausalLM

    from sglang.testing.tiny_eagle import EagleOneTwin, write_eagle_config

    target = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    torch.manual_seed(0)
    twin = EagleOneTwin(AutoConfig.from_pretrained(model_path), target.model.embed_tokens.weight)
    with torch.no_grad():
        for p in twin.parameters():
            p.normal_(0.0, 0.1)
    head = write_eagle_config(model_path, str(tmp_path / "head"), "eagle")
    save_file(twin.published_tensors(), f"{head}/model.safetensors")
    h = SchedulerHarness(model_path, **eagle_args(head))
    drafter = h.scheduler.spec.drafter
    forward, seen = drafter.runner.forward, []

    def record(fb):
        out = forward(fb)
        if fb.forward_mode.is_extend() and not seen:
            seen.append((fb.input_ids.tolist(), out.next_token_logits[0].clone()))
        return out

    drafter.runner.forward = record
    ids = prompts[2]
    h.submit("0", input_ids=ids, params={"max_new_tokens": 4, "temperature": 0, "ignore_eos": True})
    text = ids + h.run_until_idle()["0"].output_ids
    next_tokens, logits = seen[0]
    n = len(next_tokens)
    assert next_tokens == text[1:n + 1]
    with torch.no_grad():
        feats = target(input_ids=torch.tensor([text[:n]]), output_hidden_states=True).hidden_states[-1]
        want = target.lm_head(twin(torch.tensor([next_tokens]), feats)[0, -1])
    torch.testing.assert_close(logits, want, atol=1e-4, rtol=1e-4)
