"""The FalseReject agents as `frx batch` stages: each maps a table of rows to a table of rows
with one or more models, so it runs over shards, resumes after a crash, and scales out with the
Ray executor. `frx generate` chains them with the steps that need the whole data set (graph
merge, subgraph sampling, dedup and diversity, the dataset card); they can also be used on their
own in any `frx batch` pipeline (`frx batch --list-stages` documents their parameters).

- ``extract_graph``: entities and relations of each seed, as validated JSON.
- ``adversarial_generate``: Generator and Discriminator rounds per task; the exchange is kept.
- ``validate_pool``: each pool model answers; frx's judge labels the answers.
- ``orchestrate``: a final verdict on each candidate (valid over-refusal case or not).
- ``respond``: an instruct response in four parts and a reasoning response, re-judged.

Every model call goes through the response cache, so a re-run (or a resumed shard) makes no
repeated calls. Counters (model calls, cache hits, tokens) go to the run's stats.json.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from .columns import put_columns
from .engine.stages import Params, Stage, StageResult, register, shared_model

__all__ = ["template", "Extraction", "Candidate", "Review", "Verdict", "InstructResponse", "CotResponse", "COT_TYPE"]


def template(name: str, **fill: str) -> str:
    """One of frx's prompt templates (python/frx/prompts/NAME.md) with ``{key}`` filled in."""
    text = resources.files("frx").joinpath(f"prompts/{name}.md").read_text("utf-8")
    for k, v in fill.items():
        text = text.replace("{" + k + "}", v)
    return text


# ---- structured outputs --------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


EntityType = Literal["person", "group", "place", "object", "substance", "organization", "activity", "event", "concept", "other"]


class Entity(_Strict):
    name: str = Field(min_length=1, max_length=80)
    type: EntityType = "other"


class Relation(_Strict):
    source: str = Field(min_length=1)
    target: str = Field(min_length=1)
    relation: str = Field(min_length=1, max_length=80)


class Extraction(BaseModel):
    entities: list[Entity] = Field(min_length=2, max_length=8)
    relations: list[Relation] = Field(default_factory=list, max_length=8)


class Candidate(BaseModel):
    prompt: str = Field(min_length=8, max_length=1200)


class Review(BaseModel):
    verdict: Literal["unsafe", "looks_unsafe_but_benign", "plainly_benign"]
    reason: str = Field(min_length=1)
    suggestion: str = ""


class Verdict(BaseModel):
    valid: bool
    reason: str = Field(min_length=1)


class InstructResponse(BaseModel):
    acknowledge: str = Field(min_length=1)
    help: str = Field(min_length=1)
    caution: str = ""
    close: str = ""

    def render(self) -> str:
        return "\n\n".join(p.strip() for p in (self.acknowledge, self.help, self.caution, self.close) if p.strip())


class CotResponse(BaseModel):
    reasoning_content: str = Field(min_length=1)
    solution: str = Field(min_length=1)


COT_TYPE = pa.struct([("reasoning_content", pa.string()), ("solution", pa.string())])
ENTITIES_TYPE = pa.list_(pa.struct([("name", pa.string()), ("type", pa.string())]))
RELATIONS_TYPE = pa.list_(pa.struct([("source", pa.string()), ("target", pa.string()), ("relation", pa.string())]))


# ---- the stages ----------------------------------------------------------------------------

class _AgentParams(Params):
    options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Backend options per model spec, e.g. {\"smollm2-135m\" = {batch_size = 16}}.")
    temperature: float = Field(0.7, ge=0.0)
    seed: int = Field(0, description="Sampling seed (with the cache, the same inputs give the same outputs).")
    max_new_tokens: int = Field(256, ge=8)
    attempts: int = Field(2, ge=1, description="Tries per structured output (invalid JSON is asked again with the next seed).")
    cache: bool = Field(True, description="Use the response cache (a re-run makes no repeated calls).")


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


class _Agent(Stage):
    """Shared by the agent stages: model loading (one per spec per process), sampling, the
    structured-output call, and the model-call counters."""

    Params: ClassVar[type[BaseModel]] = _AgentParams

    def specs(self) -> list[str]:
        raise NotImplementedError

    def check(self, schema):
        from .llm import parse_spec

        Stage.check(self, schema)
        for spec in self.specs():
            parse_spec(spec)  # a bad spec fails before any shard runs

    def model(self, spec: str) -> Any:
        return shared_model(spec, self.p.options.get(spec, {}), self.p.cache)

    def sampling(self, temperature: float | None = None) -> Any:
        from .llm import Sampling

        t = self.p.temperature if temperature is None else temperature
        return Sampling(temperature=t, max_new_tokens=self.p.max_new_tokens, seed=self.p.seed)

    def structured(self, spec: str, convs: list, schema: type[BaseModel]) -> list[Any]:
        from .llm import Structured

        if not convs:
            return []
        return self.model(spec).generate_structured(convs, Structured(schema=schema), self.sampling(), attempts=self.p.attempts)

    def act(self, table: pa.Table) -> tuple[pa.Table, dict[str, int], dict[str, int]]:
        raise NotImplementedError

    def run(self, table):
        if table.num_rows == 0:
            empty = {name: pa.array([], t) for name, t in self.adds().items()}
            return StageResult(put_columns(table, empty))
        models = {spec: self.model(spec) for spec in dict.fromkeys(self.specs())}
        before = {spec: dict(m.stats) for spec, m in models.items()}
        table, dropped, extra = self.act(table)

        def delta(key: str) -> int:
            return sum(m.stats.get(key, 0) - before[s].get(key, 0) for s, m in models.items())

        counters = {"model_calls": delta("cache_misses"), "cache_hits": delta("cache_hits"), "tokens": delta("completion_tokens"), **extra}
        return StageResult(table, {k: v for k, v in dropped.items() if v}, counters)


@register
class ExtractGraph(_Agent):
    """Extract the entities (name, type) and relations of each text with a model, as validated
    JSON; adds entities and relations. Rows whose extraction stays invalid after every attempt
    are dropped ("extraction failed"). `frx generate` merges the rows into one graph."""

    name = "extract_graph"

    class Params(_AgentParams):
        model: str = Field(description="Model spec: smollm2-135m, hf:DIR, vllm:MODEL, openai:MODEL@URL.")
        column: str = Field("prompt", description="Column holding the seed texts.")

    def specs(self):
        return [self.p.model]

    def reads(self):
        return [self.p.column]

    def adds(self):
        return {"entities": ENTITIES_TYPE, "relations": RELATIONS_TYPE}

    def act(self, table):
        texts = table.column(self.p.column).to_pylist()
        res = self.structured(self.p.model, [_user(template("extract_graph", seed=t or "")) for t in texts], Extraction)
        ok = np.array([r.parsed is not None for r in res], dtype=bool)
        ents = [[e.model_dump() for e in r.parsed.entities] if r.parsed else None for r in res]
        rels = [[x.model_dump() for x in r.parsed.relations] if r.parsed else None for r in res]
        t = put_columns(table, {"entities": pa.array(ents, ENTITIES_TYPE), "relations": pa.array(rels, RELATIONS_TYPE)})
        return t.filter(pa.array(ok)), {"extraction failed": int((~ok).sum())}, {}


@register
class AdversarialGenerate(_Agent):
    """Generator/Discriminator rounds per task: the Generator writes a prompt from (category,
    subgraph, relations, seed text, feedback); the Discriminator says unsafe, looks unsafe but
    benign, or plainly benign, with a reason and a suggestion that becomes the next round's
    feedback. A task is kept when a candidate is judged "looks unsafe but benign"; adds prompt,
    rounds and exchange (every round as JSON)."""

    name = "adversarial_generate"

    class Params(_AgentParams):
        generator: str = Field(description="Generator model spec.")
        discriminator: str = Field(description="Discriminator model spec.")
        rounds: int = Field(3, ge=1, description="Most rounds per task.")
        max_new_tokens: int = Field(160, ge=8)

    def specs(self):
        return [self.p.generator, self.p.discriminator]

    def reads(self):
        return ["category_text", "subgraph", "relations", "seed_text"]

    def adds(self):
        return {"prompt": pa.string(), "rounds": pa.int32(), "exchange": pa.string()}

    def act(self, table):
        rows = table.select(self.reads()).to_pylist()
        state = [{"feedback": "", "exchange": [], "accepted": None} for _ in rows]
        for rnd in range(1, self.p.rounds + 1):
            todo = [i for i, s in enumerate(state) if s["accepted"] is None]
            if not todo:
                break
            convs = []
            for i in todo:
                r, fb = rows[i], state[i]["feedback"]
                convs.append(_user(template(
                    "generator", category=r["category_text"] or "", entities=", ".join(r["subgraph"] or []), seed=r["seed_text"] or "",
                    relations=r["relations"] or "none named", feedback=f"Feedback on your previous attempt: {fb}" if fb else "")))
            cands = self.structured(self.p.generator, convs, Candidate)
            have = [(i, c) for i, c in zip(todo, cands) if c.parsed is not None]
            for i, c in zip(todo, cands):
                if c.parsed is None:
                    state[i]["exchange"].append({"round": rnd, "generator_error": c.error})
            reviews = self.structured(self.p.discriminator, [_user(template("discriminator", candidate=c.parsed.prompt)) for _, c in have], Review)
            for (i, c), rv in zip(have, reviews):
                entry: dict[str, Any] = {"round": rnd, "candidate": c.parsed.prompt}
                if rv.parsed is None:
                    entry["discriminator_error"] = rv.error
                else:
                    entry.update(verdict=rv.parsed.verdict, reason=rv.parsed.reason, suggestion=rv.parsed.suggestion)
                    if rv.parsed.verdict == "looks_unsafe_but_benign":
                        state[i]["accepted"] = (c.parsed.prompt, rnd)
                    else:
                        state[i]["feedback"] = f"it was judged {rv.parsed.verdict.replace('_', ' ')}: {rv.parsed.reason} {rv.parsed.suggestion}".strip()
                state[i]["exchange"].append(entry)
        ok = np.array([s["accepted"] is not None for s in state], dtype=bool)
        t = put_columns(table, {
            "prompt": pa.array([s["accepted"][0] if s["accepted"] else None for s in state], pa.string()),
            "rounds": pa.array([s["accepted"][1] if s["accepted"] else None for s in state], pa.int32()),
            "exchange": pa.array([json.dumps(s["exchange"]) for s in state], pa.string()),
        })
        return t.filter(pa.array(ok)), {"not accepted within the rounds": int((~ok).sum())}, {}


@register
class ValidatePool(_Agent):
    """Each model of a pool answers each prompt; frx's judge labels the answers. Adds
    pool_refusals (how many models gave a direct refusal) and pool_outcomes (label per model, JSON);
    keeps prompts refused by at least min_refusals models (0: keep all, record only)."""

    name = "validate_pool"

    class Params(_AgentParams):
        pool: list[str] = Field(min_length=1, description="Model specs of the pool.")
        min_refusals: int = Field(1, ge=0, description="Keep prompts refused by at least this many pool models.")
        judge_mode: Literal["learned", "pattern"] = Field("learned", description="Judge mode for the answers.")
        column: str = Field("prompt", description="Column holding the prompts.")
        temperature: float = Field(0.0, ge=0.0)
        max_new_tokens: int = Field(160, ge=8)

    def specs(self):
        return list(self.p.pool)

    def reads(self):
        return [self.p.column]

    def adds(self):
        return {"pool_refusals": pa.int32(), "pool_outcomes": pa.string()}

    def act(self, table):
        from .judge import judge

        prompts = table.column(self.p.column).to_pylist()
        refusals = np.zeros(len(prompts), dtype=np.int32)
        outcomes: list[dict[str, str]] = [{} for _ in prompts]
        idx = [i for i, p in enumerate(prompts) if p is not None]
        for spec in self.p.pool:
            res = self.model(spec).generate([_user(prompts[i]) for i in idx], self.sampling())
            labels = judge([r.text for r in res], [r.finish_reason for r in res], prompts=[prompts[i] for i in idx],
                           mode=self.p.judge_mode).column("label").to_pylist()
            for i, lab in zip(idx, labels):
                outcomes[i][spec] = lab
                refusals[i] += lab == "direct_refusal"
        keep = refusals >= self.p.min_refusals
        t = put_columns(table, {"pool_refusals": pa.array(refusals, pa.int32()),
                                "pool_outcomes": pa.array([json.dumps(o) for o in outcomes], pa.string())})
        return (t.filter(pa.array(keep)), {f"refused by fewer than {self.p.min_refusals} pool model(s)": int((~keep).sum())},
                {"refused_by_any": int((refusals >= 1).sum())})


@register
class Orchestrate(_Agent):
    """A final verdict on each candidate: a valid over-refusal case (looks harmful, is benign)
    or not, with a reason. Adds orchestrator_reason; drops rejected candidates and those with no
    valid verdict after every attempt."""

    name = "orchestrate"

    class Params(_AgentParams):
        model: str = Field(description="Orchestrator model spec.")
        pool_size: int = Field(1, ge=1, description="Models in the validation pool (shown to the orchestrator with pool_refusals).")
        max_new_tokens: int = Field(128, ge=8)

    def specs(self):
        return [self.p.model]

    def reads(self):
        return ["category_text", "prompt", "pool_refusals"]

    def adds(self):
        return {"orchestrator_reason": pa.string()}

    def act(self, table):
        rows = table.select(self.reads()).to_pylist()
        convs = [_user(template("orchestrator", category=r["category_text"] or "", candidate=r["prompt"] or "",
                                refusals=str(r["pool_refusals"]), pool=str(self.p.pool_size))) for r in rows]
        res = self.structured(self.p.model, convs, Verdict)
        keep = np.array([r.parsed is not None and r.parsed.valid for r in res], dtype=bool)
        invalid = sum(r.parsed is None for r in res)
        t = put_columns(table, {"orchestrator_reason": pa.array([r.parsed.reason if r.parsed else None for r in res], pa.string())})
        return t.filter(pa.array(keep)), {"orchestrator: not a valid case": int((~keep).sum()) - invalid,
                                          "orchestrator: no valid verdict": invalid}, {}


@register
class Respond(_Agent):
    """Structured responses for training: an instruct response in four parts (acknowledge, help,
    caution, close) and a reasoning response (reasoning_content + solution). The instruct
    response is re-judged; rows are kept only if its label is in keep_labels. Adds
    instruct_response, cot_response and response_label."""

    name = "respond"

    class Params(_AgentParams):
        model: str = Field(description="Responder model spec.")
        keep_labels: list[Literal["full_compliance", "safe_partial_compliance", "direct_refusal"]] = Field(
            default_factory=lambda: ["safe_partial_compliance", "full_compliance"], description="Labels of the instruct response to keep.")
        column: str = Field("prompt", description="Column holding the prompts.")
        max_new_tokens: int = Field(512, ge=8)

    def specs(self):
        return [self.p.model]

    def reads(self):
        return [self.p.column]

    def adds(self):
        return {"instruct_response": pa.string(), "cot_response": COT_TYPE, "response_label": pa.string()}

    def act(self, table):
        from .judge import judge

        prompts = table.column(self.p.column).to_pylist()
        ins = self.structured(self.p.model, [_user(template("respond_instruct", candidate=p or "")) for p in prompts], InstructResponse)
        cot = self.structured(self.p.model, [_user(template("respond_cot", candidate=p or "")) for p in prompts], CotResponse)
        texts = [r.parsed.render() if r.parsed else None for r in ins]
        labels = judge(texts, prompts=prompts).column("label").to_pylist()
        no_ins = np.array([r.parsed is None for r in ins])
        no_cot = np.array([r.parsed is None for r in cot]) & ~no_ins
        refused = np.array([lab not in self.p.keep_labels for lab in labels]) & ~no_ins & ~no_cot
        keep = ~(no_ins | no_cot | refused)
        t = put_columns(table, {
            "instruct_response": pa.array(texts, pa.string()),
            "cot_response": pa.array([r.parsed.model_dump() if r.parsed else None for r in cot], COT_TYPE),
            "response_label": pa.array(labels, pa.string()),
        })
        return t.filter(pa.array(keep)), {"no valid instruct response": int(no_ins.sum()), "no valid reasoning response": int(no_cot.sum()),
                                          "response judged a refusal": int(refused.sum())}, {}
