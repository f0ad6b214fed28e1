"""The memorizing tiny llama: corpus format, memorization check, greedy decoding through Engine.

The checkpoint is built once per machine by `trained_model_dir()` (~15 s on 2 busy cores) and
reused from the cache afterwards.
"""

from __future__ import annotations

import os

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

import sglang
from sglang.testing.fixtures import tiny_model_dir, trained_model_dir
from sglang.testing.tiny_model import tiny_config
from sglang.testing.tokenizer_factory import write_tokenizer
from sglang.testing.trained_model import (
    CHATS,
    PEOPLE,
    doc_weights,
    check_memorized,
    encode_document,
    expected_targets,
    trained_corpus,
)

GREEDY = {"max_new_tokens": 32, "temperature": 0}
END_OF_TEXT = 995  # llama family <|end_of_text|>, a stop token


@pytest.fixture(scope="module")
def model_dir() -> str:
    return trained_model_dir()


@pytest.fixture(scope="module")
def engine(model_dir: str):
    with sglang.Engine(model_path=model_dir, device="cpu", random_seed=0) as eng:
        yield eng


def test_corpus_is_small_deterministic_and_follows_the_templates():
    docs = trained_corpus()
    assert docs == trained_corpus() and len(docs) < 60
    assert docs[0] == "Name: Alice\nAge: 31\nJob: pilot\n"
    assert docs[:len(PEOPLE)] == [f"Name: {p.name}\nAge: {p.age}\nJob: {p.job}\n" for p in PEOPLE]
    for text in ("Q: What is the capital of France?\nA: Paris\n", "The sky is blue.",
                 "Review: I loved it. Sentiment: positive\n", "Review: It was awful. Sentiment: negative\n"):
        assert text in docs


def test_chat_documents_match_the_checkpoint_chat_template(model_dir: str):
    tok = AutoTokenizer.from_pretrained(model_dir)
    rendered = [tok.apply_chat_template([{"role": r, "content": c} for r, c in chat], tokenize=False)
                for chat in CHATS]
    assert rendered == trained_corpus()[-len(CHATS):]


def test_tokenizer_is_the_tiny_llama_one(model_dir: str):
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        with open(os.path.join(model_dir, name), "rb") as a, \
                open(os.path.join(tiny_model_dir("llama"), name), "rb") as b:
            assert a.read() == b.read(), name


def test_expected_targets_pick_the_heaviest_continuation():
    seqs = [[1, 2, 3], [1, 4, 5], [1, 6, 7]]
    exp = expected_targets(seqs, [4.0, 1.0, 1.0])
    assert exp[1][0].tokens == {2} and exp[1][0].ideal_margin == pytest.approx(1.3863, abs=1e-4)
    assert exp[1][1].tokens == {5} and exp[1][1].ideal_margin == float("inf")
    assert expected_targets(seqs[1:], [1.0, 1.0])[0][0].tokens == {4, 6}  # a tie accepts both


def test_check_memorized_passes_trained_and_rejects_untrained(model_dir: str, tmp_path):
    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    ids = write_tokenizer("llama", str(tmp_path))
    seqs = [encode_document(tok, d) for d in trained_corpus()]
    assert seqs[0][0] == ids.bos_id and seqs[0][-1] == END_OF_TEXT
    assert seqs[-1][-1] == ids.eos_id and seqs[-1].count(ids.bos_id) == 1  # chats: <|eot_id|>
    trained = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    assert check_memorized(trained, seqs, doc_weights(), ids.pad_id) > 1.0
    torch.manual_seed(0)
    untrained = AutoModelForCausalLM.from_config(tiny_config("llama", ids)).eval()
    with pytest.raises(RuntimeError, match="expected one of"):
        check_memorized(untrained, seqs, doc_weights(), ids.pad_id)


@pytest.mark.parametrize("prompt, expected", [
    ("Name: Alice\nAge:", " 31\nJob: pilot\n"),
    ("Name:", " Alice\nAge: 31\nJob: pilot\n"),
    ("Name: Tom\nAge:", " 47\nJob: plumber\n"),
    ("Review: I loved it. Sentiment:", " positive\n"),
    ("Review: It was awful. Sentiment:", " negative\n"),
    ("Q: What is the capital of France?\nA:", " Paris\n"),
    ("The sky is", " blue."),
])
def test_engine_greedy_reproduces_the_corpus(engine, prompt: str, expected: str):
    out = engine.generate(prompt, GREEDY)
    assert out["text"] == expected
    assert out["meta_info"]["finish_reason"]["type"] == "stop"


def test_engine_stop_string_gives_one_field(engine):
    out = engine.generate("Review: I loved it. Sentiment:", {**GREEDY, "stop": ["\n"]})
    assert out["text"] == " positive"


def test_engine_chat_answer(engine, model_dir: str):
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    out = engine.generate(input_ids=tok.encode(prompt, add_special_tokens=False), sampling_params=GREEDY)
    assert out["text"] == "The capital of France is Paris."
