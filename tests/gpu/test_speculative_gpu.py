"""Speculative decoding on a GPU (float32, CUDA graphs on): NGRAM, DRAFT (the target drafting for
itself) and EAGLE (an EAGLE-3 head fitted to the tiny trained model; chain and tree) give the
greedy outputs of plain decoding on the same device, with drafts accepted, decode graphs captured
(EAGLE's feature writes inside them), and the KV pool free at the end."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

NEW_TOKENS = 24
# Float32 on the GPU: verify rows and decode rows take differently shaped matmuls, so a greedy
# choice may flip where the top two logits tie within rounding; the trained model's memorized
# positions have margins >= 1.0, so at most a couple of the 64 requests may differ.
MAX_DIFFERING = 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from sglang.testing.fixtures import trained_model_dir
    from sglang.testing.scheduler_harness import SchedulerHarness
    from sglang.testing.tiny_eagle import fit_eagle3_readout
    from sglang.testing.trained_model import encode_document, trained_corpus
    from tests.speculative.copy_prompts import copy_prompts

    model = trained_model_dir()
    tokenizer = SchedulerHarness(model).tokenizer
    tok = tokenizer._tokenizer if hasattr(tokenizer, "_tokenizer") else tokenizer.backend_tokenizer
    head = fit_eagle3_readout(model, str(tmp_path_factory.mktemp("head")),
                              [encode_document(tok, d) for d in trained_corpus()])
    prompts = copy_prompts(tokenizer, 64)
    return model, head, prompts, _generate(model, prompts)[0]


def _generate(model, prompts, **overrides):
    from sglang.testing.scheduler_harness import SchedulerHarness

    h = SchedulerHarness(model, device="cuda", dtype="float32", max_total_tokens=8192, **overrides)
    for i, ids in enumerate(prompts):
        h.submit(str(i), input_ids=ids, params={"max_new_tokens": NEW_TOKENS, "temperature": 0, "ignore_eos": True})
    results = h.run_until_idle()
    assert h.scheduler.check_memory_idle() is None
    return [results[str(i)].output_ids for i in range(len(prompts))], h


@pytest.mark.parametrize("algo", ["NGRAM", "DRAFT", "EAGLE-chain", "EAGLE-tree"])
def test_greedy_equals_plain_decoding_on_cuda(setup, algo):
    model, head, prompts, reference = setup
    args = {"speculative_disable_batch_size": 64}
    if algo == "NGRAM":
        args["speculative_algorithm"] = "NGRAM"
    elif algo == "DRAFT":
        args.update(speculative_algorithm="DRAFT", speculative_draft_model_path=model)
    else:
        args.update(speculative_algorithm="EAGLE", speculative_draft_model_path=head,
                    speculative_eagle_topk=1 if algo == "EAGLE-chain" else 4)
    outs, h = _generate(model, prompts, **args)
    differing = sum(a != b for a, b in zip(outs, reference))
    assert differing <= MAX_DIFFERING, differing
    state = h.scheduler.state()
    assert state["spec_accepted_tokens"] > 0, state
    assert h.runner.graph_runner is not None  # captured with the feature writes (EAGLE) inside
    # Drafting steps after the catch-up replay the draft model's / head's decode graphs.
    draft_runner = {"DRAFT": lambda s: s.runner, "EAGLE": lambda s: s.drafter.runner}.get(algo.split("-")[0])
    if draft_runner is not None:
        graphs = draft_runner(h.scheduler.spec).graph_runner
        assert graphs is not None and graphs.num_replays > 0
