"""The OpenAI-compatible backend against a local server with injected faults, and the cache."""

from __future__ import annotations

import pytest
from openai_server import FakeServer
from pydantic import BaseModel

from frx.errors import FrxError
from frx.llm import Sampling, Structured, load_model, parse_spec


@pytest.fixture()
def server():
    return FakeServer().start()


def _model(server, tmp_path, **kw):
    kw.setdefault("backoff_s", 0.01)
    return load_model(f"openai:test-model@{server.url}", cache=tmp_path / "cache.sqlite", **kw)


def user(text):
    return [{"role": "user", "content": text}]


def test_faults_are_retried_or_recorded(server, tmp_path, monkeypatch):
    monkeypatch.setenv("FRX_TEST_KEY", "sk-secret-123")
    m = _model(server, tmp_path, timeout_s=0.5, api_key_env="FRX_TEST_KEY", concurrency=8)
    texts = [f"plain {i}" for i in range(20)] + [
        "a [fault:429*2]", "b [fault:500]", "c [fault:timeout]", "d [fault:malformed]", "e [fault:reset]",
        "f [fault:truncated]", "g [fault:empty]", "h [fault:refusal]", "i [fault:filter]", "j [fault:400]",
        "k [fault:500*99]",
    ]
    res = m.generate([user(t) for t in texts], Sampling(max_new_tokens=16, seed=7, stop=("END",)))
    assert len(res) == len(texts)
    by = dict(zip(texts, res))
    for t in texts[:20] + ["a [fault:429*2]", "b [fault:500]", "c [fault:timeout]", "d [fault:malformed]",
                           "e [fault:reset]", "f [fault:truncated]", "g [fault:empty]"]:
        assert by[t].error is None and by[t].text == f"echo: {t}" and by[t].finish_reason == "stop", (t, by[t])
    assert by["a [fault:429*2]"].attempts == 3
    assert by["h [fault:refusal]"].finish_reason == "refusal" and by["h [fault:refusal]"].refusal
    assert by["i [fault:filter]"].finish_reason == "content_filter"
    assert by["j [fault:400]"].error.startswith("HTTP 400") and by["j [fault:400]"].attempts == 1
    assert by["k [fault:500*99]"].error.startswith("gave up after 6 attempts") and by["k [fault:500*99]"].text is None
    # Nothing duplicated: every message succeeded at most once; the key went only to the server.
    assert server.stats()["duplicates"] == 0
    assert server.auth == {"Bearer sk-secret-123"}
    assert server.max_in_flight <= 8
    assert m.stats["errors"] == 2
    assert "sk-secret" not in (tmp_path / "cache.sqlite").read_bytes().decode("latin-1")


def test_concurrency_limit_and_order(server, tmp_path):
    server.latency = 0.02
    m = _model(server, tmp_path, concurrency=5)
    texts = [f"q{i}" for i in range(60)]
    res = m.generate([user(t) for t in texts])
    assert [r.text for r in res] == [f"echo: {t}" for t in texts]
    assert server.max_in_flight == 5


def test_cache_means_no_repeated_calls(server, tmp_path):
    m = _model(server, tmp_path)
    texts = [f"cached {i}" for i in range(10)]
    first = m.generate([user(t) for t in texts], Sampling(seed=1))
    n = server.requests
    again = load_model(f"openai:test-model@{server.url}", cache=tmp_path / "cache.sqlite")
    second = again.generate([user(t) for t in texts], Sampling(seed=1))
    assert server.requests == n
    assert [r.text for r in second] == [r.text for r in first] and all(r.cached for r in second)
    assert again.stats["cache_hits"] == 10 and again.stats["cache_misses"] == 0
    # Another seed is another request; failed calls are not cached.
    again.generate([user(texts[0])], Sampling(seed=2))
    assert server.requests == n + 1


def test_sampling_reaches_the_server(server, tmp_path):
    m = _model(server, tmp_path)
    m.generate([user("x")], Sampling(temperature=0.5, max_new_tokens=9, seed=3, stop=("\n\n",)))
    assert server.bodies["x"] == {"model": "test-model", "messages": user("x"), "temperature": 0.5, "top_p": 1.0,
                                  "max_tokens": 9, "seed": 3, "stop": ["\n\n"]}
    m.generate_structured([user("y")], Structured(schema=Verdict))
    rf = server.bodies["y"]["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["schema"] == Verdict.model_json_schema()


class Verdict(BaseModel):
    label: str
    reason: str


def test_structured_output_retries_then_records(tmp_path):
    from frx.llm.base import Backend, Model, Result

    class Scripted(Backend):
        """Replies from a script per attempt (seed), to check validation and retries."""

        model_id = "scripted"

        def __init__(self, replies):
            self.replies = replies
            self.calls = 0

        def _generate(self, convs, sampling, structured):
            self.calls += len(convs)
            return [Result(self.replies[c[-1]["content"].split("\n")[0]][min(sampling.seed, 2)], "stop") for c in convs]

    good = '{"label": "benign", "reason": "ok"}'
    b = Scripted({"A": [good] * 3, "B": ["not json", "```json\n" + good + "\n```", good], "C": ["{}", "nope", "{\"label\": 1}"]})
    m = Model(b, "scripted")
    res = m.generate_structured([user("A"), user("B"), user("C")], Structured(schema=Verdict), attempts=3)
    assert res[0].parsed == Verdict(label="benign", reason="ok") and res[0].attempts == 1 and res[0].error is None
    assert res[1].parsed.label == "benign" and res[1].attempts == 2 and res[1].error is None
    assert res[2].parsed is None and res[2].attempts == 3 and "invalid structured output after 3" in res[2].error
    assert b.calls == 3 + 2 + 1
    c = Model(Scripted({"A": [" Benign\n", "x", "x"], "B": ["maybe", "maybe", "maybe"]}), "s")
    r = c.generate_structured([user("A"), user("B")], Structured(choices=("benign", "harmful")), attempts=3)
    assert r[0].parsed == "benign" and r[1].parsed is None and r[1].error


def test_specs_and_bad_input(tmp_path):
    assert parse_spec("openai:gpt-4o@https://api.example.com/v1").base_url == "https://api.example.com/v1"
    assert parse_spec("smollm2-135m").kind == "hf"
    assert parse_spec("vllm:Qwen/Qwen2.5-7B-Instruct").model == "Qwen/Qwen2.5-7B-Instruct"
    for bad, msg in [("", "empty"), ("openai:gpt", "expected openai"), ("hf:", "nothing after"), ("nosuchmodel", "unknown model spec")]:
        with pytest.raises(FrxError, match=msg):
            parse_spec(bad)
    with pytest.raises(FrxError, match="does not exist"):
        load_model(f"hf:{tmp_path / 'missing'}", cache=False)
    with pytest.raises(FrxError, match="non-empty list"):
        load_model("openai:m@http://127.0.0.1:9", cache=False).generate([[]])
    with pytest.raises(FrxError, match="exactly one"):
        Structured()
