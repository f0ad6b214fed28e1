"""Jump-forward re-tokenization, alone and driving a grammar the way the scheduler will."""

from __future__ import annotations

import json
import random
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sglang.runtime.constrained.jump_forward import jump_forward_retokenize

_TEXT = st.text(alphabet=st.sampled_from(list('ab cé日本"{}:,.\n0129xyzthe')), max_size=24)
_SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _check_splice(tokenizer, output_ids, jump, context) -> list:
    new_tail, replaced = jump_forward_retokenize(tokenizer, output_ids, jump, context)
    assert 0 <= replaced <= min(context, len(output_ids))
    spliced = output_ids[: len(output_ids) - replaced] + new_tail
    if new_tail:
        assert _decode(tokenizer, spliced) == _decode(tokenizer, output_ids) + jump
    return new_tail


@_SETTINGS
@given(prefix=_TEXT, jump=_TEXT.filter(bool), context=st.integers(0, 6))
def test_canonical_outputs_keep_text_and_retokenize(tokenizer, prefix: str, jump: str, context: int) -> None:
    output_ids = tokenizer.encode(prefix, add_special_tokens=False)
    new_tail = _check_splice(tokenizer, output_ids, jump, context)
    assert new_tail, "a byte-level tokenizer can always append the jump string"
    new_tail2, replaced = jump_forward_retokenize(tokenizer, output_ids, jump, context)
    tail_text = _decode(tokenizer, output_ids[len(output_ids) - replaced:]) if replaced else ""
    assert new_tail2 == tokenizer.encode(tail_text + jump, add_special_tokens=False)  # canonical


@_SETTINGS
@given(ids=st.lists(st.integers(0, 993), max_size=10), jump=_TEXT.filter(bool))
def test_arbitrary_token_sequences_never_change_text(tokenizer, ids: list, jump: str) -> None:
    """Model outputs need not be canonical and may end inside a multi-byte character."""
    new_tail = _check_splice(tokenizer, ids, jump, 4)
    if "\ufffd" not in _decode(tokenizer, ids):
        assert new_tail


def test_merges_across_the_boundary(tokenizer) -> None:
    output_ids = tokenizer.encode('{"', add_special_tokens=False)
    new_tail, replaced = jump_forward_retokenize(tokenizer, output_ids, 'name": "', context_tokens=4)
    assert replaced == len(output_ids)
    assert new_tail == tokenizer.encode('{"name": "', add_special_tokens=False)
    assert jump_forward_retokenize(tokenizer, output_ids, "") == ([], 0)


def _decode_with_jumps(grammar, tokenizer, vocab, rng, max_steps=120):
    """The scheduler's loop in miniature: jump when forced, else sample one allowed token."""
    output_ids, decode_steps, jumped = [], 0, 0
    mask = torch.zeros(vocab.vocab_size, dtype=torch.bool)
    while not grammar.is_terminated() and decode_steps < max_steps:
        jump = grammar.try_jump_forward()
        if jump:
            new_tail, replaced = jump_forward_retokenize(tokenizer, output_ids, jump)
            assert new_tail
            grammar.rollback(replaced)
            assert grammar.accept_tokens(new_tail), "re-tokenized text must be accepted again"
            kept = len(output_ids) - replaced
            jumped += len(new_tail) - replaced
            output_ids = output_ids[:kept] + new_tail
            continue
        grammar.fill_allowed_mask(mask)
        choices = [t for t in mask.nonzero().flatten().tolist() if t not in vocab.eos_ids]
        if not choices:
            break  # only EOS: done
        token = rng.choice(choices)
        assert grammar.accept_token(token)
        output_ids.append(token)
        decode_steps += 1
    return output_ids, decode_steps, jumped


@pytest.mark.parametrize("backend", ["fsm", "xgrammar"])
@pytest.mark.parametrize(
    "kind,spec",
    [
        ("regex", r'\{"name": "[a-z]{1,8}", "age": [0-9]{1,2}, "city": "(Paris|Tokyo)"\}'),
        ("regex", r"The answer is (yes|no)\. Thank you for asking!"),
        ("json", '{"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, '
                 '"kind": {"enum": ["cat", "dog"]}}, "required": ["name", "kind"]}'),
    ],
)
def test_jump_forward_decoding_stays_valid_and_saves_steps(backend, kind, spec, compiled, tokenizer, vocab) -> None:
    rng = random.Random(7)
    total_jumped = 0
    for _ in range(8):
        grammar = compiled(backend, kind, spec)
        output_ids, steps, jumped = _decode_with_jumps(grammar, tokenizer, vocab, rng)
        text = _decode(tokenizer, output_ids)
        assert grammar.is_terminated(), text
        if kind == "regex":
            assert re.fullmatch(spec, text), text
        else:
            value = json.loads(text)
            assert set(value) == {"name", "kind"} and value["kind"] in ("cat", "dog") and len(value["name"]) <= 6
        total_jumped += jumped
        assert jumped > 0 and steps < len(output_ids)  # forced text cost no decode steps
    assert total_jumped >= 8
