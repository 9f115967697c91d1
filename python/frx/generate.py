"""`frx generate`: the FalseReject pipeline, from toxic seeds to a dataset of prompts that look
harmful but are benign, that real models over-refuse, with structured responses for training.

Steps, each recorded in the funnel (rows in, rows out, drop reasons):

1. ``seeds`` — read and check the seeds: empty text, duplicate ids and unknown categories are
   dropped with a reason.
2. ``extract_graph`` — a model extracts entities and relations from each seed as validated JSON;
   all seeds' graphs merge into one (nodes deduplicated by normalised name): ``graph/nodes`` and
   ``graph/edges`` (Arrow/Parquet).
3. ``sample_subgraphs`` — the Rust sampler draws connected 2–4-entity subgraphs around each
   category's entities, to a per-category quota, seeded.
4. ``adversarial_generate`` — Generator writes a candidate from (category, subgraph, seed text,
   feedback); Discriminator says unsafe / looks-unsafe-but-benign / plainly benign, with a reason
   and a suggestion that becomes the next round's feedback; up to ``rounds`` rounds. Every
   exchange is kept (``exchange`` column).
5. ``dedup`` — exact and near duplicates (Rust index) and copies of reference sets
   (contamination), then ``diversity``: embeddings (``minilm`` or any sentence-transformers model)
   and greedy removal of candidates with cosine ≥ threshold to a kept one, per category.
6. ``validate_pool`` — each pool model answers; frx's judge labels the answers; keep prompts
   refused (direct refusal) by at least ``min_refusals`` models.
7. ``orchestrate`` — a final verdict (valid over-refusal case or not, with a reason).
8. ``respond`` — an instruct response in four parts and a reasoning response
   (``reasoning_content`` + ``solution``); the instruct response is re-judged and kept only if
   its label is in ``keep_labels``.
9. ``write_dataset`` — Parquet in the FalseReject schema + provenance, a dataset card
   (README.md with a ``configs:`` block) and the quality report.

Each step's output is written atomically under ``OUT/steps/``; a re-run skips finished steps (for
the same config) and the response cache answers every model call made before an interruption,
so a killed run, run again, gives the same result without repeated calls.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import read_toml, validation_message
from .errors import FrxError

# ---- config --------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedsConfig(_Strict):
    path: str = Field(description="Seed prompts: Parquet, JSONL or CSV.")
    text_column: str = "prompt"
    id_column: str = "id"
    category_column: str = "category"
    limit: int | None = Field(None, ge=1)


class ModelsConfig(_Strict):
    extractor: str = "smollm2-135m"
    generator: str = "smollm2-135m"
    discriminator: str = "smollm2-135m"
    orchestrator: str = "smollm2-135m"
    responder: str = "smollm2-135m"
    pool: list[str] = Field(default_factory=lambda: ["smollm2-135m"], min_length=1)
    options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="Backend options per model spec.")
    temperature: float = Field(0.7, ge=0.0)
    seed: int = 0


class ExtractConfig(_Strict):
    max_new_tokens: int = Field(256, ge=16)
    attempts: int = Field(2, ge=1)


class SampleConfig(_Strict):
    tasks_per_category: int = Field(4, ge=1)
    min_entities: int = Field(2, ge=1)
    max_entities: int = Field(4, ge=1)
    seed: int = 0


class AdversarialConfig(_Strict):
    rounds: int = Field(3, ge=1)
    max_new_tokens: int = Field(160, ge=16)
    attempts: int = Field(2, ge=1)


class DedupConfig(_Strict):
    near_threshold: float = Field(0.7, gt=0.0, le=1.0)
    against: list[str] = Field(default_factory=list, description="Reference prompt files (contamination check).")
    against_column: str = "prompt"
    embed_model: str | None = Field("minilm", description="minilm (offline), a sentence-transformers model path, or none.")
    cosine_threshold: float = Field(0.9, gt=0.0, le=1.0)


class ValidateConfig(_Strict):
    min_refusals: int = Field(1, ge=0, description="Keep prompts refused by at least this many pool models (0: record only).")
    max_new_tokens: int = Field(160, ge=8)
    judge_mode: Literal["pattern", "learned"] = "pattern"


class OrchestrateConfig(_Strict):
    enabled: bool = True
    max_new_tokens: int = Field(128, ge=16)
    attempts: int = Field(2, ge=1)


class RespondConfig(_Strict):
    max_new_tokens: int = Field(512, ge=32)
    attempts: int = Field(2, ge=1)
    keep_labels: list[Literal["full_compliance", "safe_partial_compliance", "direct_refusal"]] = Field(
        default_factory=lambda: ["safe_partial_compliance", "full_compliance"])


class OutputConfig(_Strict):
    dir: str = "out/generated"


class GenerateConfig(_Strict):
    seeds: SeedsConfig
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    extract: ExtractConfig = Field(default_factory=ExtractConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    validate_pool: ValidateConfig = Field(default_factory=ValidateConfig)
    orchestrate: OrchestrateConfig = Field(default_factory=OrchestrateConfig)
    respond: RespondConfig = Field(default_factory=RespondConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    def hash(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def load_generate_config(path: str | Path, overrides: list[str] = ()) -> tuple[GenerateConfig, Path]:
    p = Path(path)
    raw = read_toml(p, overrides)
    try:
        cfg = GenerateConfig.model_validate(raw)
    except ValidationError as e:
        raise FrxError(validation_message(e, raw, str(p))) from None
    if cfg.sample.min_entities > cfg.sample.max_entities:
        raise FrxError(f"{p}: sample.min_entities ({cfg.sample.min_entities}) is above sample.max_entities ({cfg.sample.max_entities})")
    return cfg, p.resolve().parent


# ---- structured outputs --------------------------------------------------------------------

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


def template(name: str, **fill: str) -> str:
    text = resources.files("frx").joinpath(f"prompts/{name}.md").read_text("utf-8")
    for k, v in fill.items():
        text = text.replace("{" + k + "}", v)
    return text


# ---- the run -------------------------------------------------------------------------------

STEPS = ("seeds", "extract_graph", "sample_subgraphs", "adversarial_generate", "dedup", "validate_pool",
         "orchestrate", "respond", "write_dataset")

DATASET_SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt", pa.string()), ("category", pa.int32()), ("category_text", pa.string()),
    ("instruct_response", pa.string()),
    ("cot_response", pa.struct([("reasoning_content", pa.string()), ("solution", pa.string())])),
    ("seed_id", pa.string()), ("subgraph", pa.list_(pa.string())), ("rounds", pa.int32()),
    ("exchange", pa.string()), ("pool_refusals", pa.int32()), ("pool_outcomes", pa.string()),
    ("orchestrator_reason", pa.string()), ("response_label", pa.string()), ("run_id", pa.string()),
])


@dataclass
class Run:
    cfg: GenerateConfig
    base: Path
    out: Path
    funnel: list[dict[str, Any]] = field(default_factory=list)
    models: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = print
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-step measures for the funnel

    @property
    def run_id(self) -> str:
        return self.cfg.hash()[:16]

    def model(self, spec: str) -> Any:
        from .llm import load_model

        if spec not in self.models:
            self.models[spec] = load_model(spec, **self.cfg.models.options.get(spec, {}))
        return self.models[spec]

    def sampling(self, max_new_tokens: int, temperature: float | None = None) -> Any:
        from .llm import Sampling

        t = self.cfg.models.temperature if temperature is None else temperature
        return Sampling(temperature=t, max_new_tokens=max_new_tokens, seed=self.cfg.models.seed)

    def record(self, step: str, rows_in: int, rows_out: int, dropped: dict[str, int], seconds: float, **extra: Any) -> None:
        self.funnel = [f for f in self.funnel if f["step"] != step]
        self.funnel.append({"step": step, "rows_in": rows_in, "rows_out": rows_out,
                            "dropped": {k: v for k, v in dropped.items() if v}, "seconds": round(seconds, 3), **extra})
        _atomic_json(self.out / "funnel.json", {"run_id": self.run_id, "steps": self.funnel})
        self.progress(f"{step:<22} {rows_in:>6} → {rows_out:<6} " + ", ".join(f"{k}: {v}" for k, v in dropped.items() if v))

    def path(self, step: str) -> Path:
        return self.out / "steps" / f"{STEPS.index(step):02d}-{step}.parquet"

    def done(self, step: str) -> pa.Table | None:
        p = self.path(step)
        if p.exists() and any(f["step"] == step for f in self.funnel):
            return pq.read_table(p)
        return None

    def save(self, step: str, table: pa.Table) -> pa.Table:
        from .io import write_parquet

        write_parquet(table, self.path(step))
        return table


def _atomic_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _calls(run: Run) -> dict[str, int]:
    return {k: sum(m.stats[s] for m in run.models.values())
            for k, s in (("model_calls", "cache_misses"), ("cache_hits", "cache_hits"), ("tokens", "completion_tokens"))}


def run_generate(cfg: GenerateConfig, base: Path, *, restart: bool = False, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns the quality report."""
    out = Path(cfg.output.dir)
    if not out.is_absolute():
        out = base / out
    run = Run(cfg, base, out, progress=progress)
    funnel_path = out / "funnel.json"
    if funnel_path.exists() and not restart:
        prev = json.loads(funnel_path.read_text())
        if prev.get("run_id") != run.run_id:
            raise FrxError(f"{out} holds a run with another config (use --restart to discard it)")
        run.funnel = prev["steps"]
    elif restart and out.exists():
        import shutil

        for sub in ("steps", "graph", "dataset"):
            shutil.rmtree(out / sub, ignore_errors=True)
        funnel_path.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    _atomic_json(out / "config.json", cfg.model_dump(mode="json"))

    steps: list[tuple[str, Callable[[Run, pa.Table], pa.Table]]] = [
        ("seeds", step_seeds), ("extract_graph", step_extract_graph), ("sample_subgraphs", step_sample_subgraphs),
        ("adversarial_generate", step_adversarial), ("dedup", step_dedup), ("validate_pool", step_validate_pool),
        ("orchestrate", step_orchestrate), ("respond", step_respond), ("write_dataset", step_write_dataset),
    ]
    table = pa.table({})
    for name, fn in steps:
        prev = run.done(name)
        if prev is not None:
            progress(f"{name:<22} done (resumed)")
            table = prev
            continue
        t0 = time.perf_counter()
        before = _calls(run)
        rows_in = table.num_rows
        table, dropped = fn(run, table)
        if os.environ.get("FRX_FAULT") == f"generate:{name}":  # test hook: die before the step is saved
            os.kill(os.getpid(), signal.SIGKILL)
        after = _calls(run)
        if name == "seeds":
            rows_in = table.num_rows + sum(dropped.values())  # the rows read from the seed file
        run.save(name, table)
        run.record(name, rows_in, table.num_rows, dropped, time.perf_counter() - t0,
                   **{k: after[k] - before[k] for k in after}, **run.notes.get(name, {}))
    from .quality import report_for_run

    return report_for_run(run.out)


# ---- steps ---------------------------------------------------------------------------------

def step_seeds(run: Run, _: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .io import read_table
    from .taxonomy import resolve

    s = run.cfg.seeds
    path = Path(s.path) if Path(s.path).is_absolute() else run.base / s.path
    if not path.exists():
        raise FrxError(f"seeds not found: {path}")
    t = read_table(path)
    for c in (s.text_column, s.category_column):
        if c not in t.column_names:
            raise FrxError(f"seeds: column {c!r} not found in {path}; columns are {', '.join(t.column_names)}")
    if s.limit:
        t = t.slice(0, s.limit)
    texts = t.column(s.text_column).to_pylist()
    ids = t.column(s.id_column).to_pylist() if s.id_column in t.column_names else list(range(t.num_rows))
    cats = t.column(s.category_column).to_pylist()
    rows, dropped, seen = [], {"empty text": 0, "duplicate id": 0, "unknown category": 0}, set()
    for i, (sid, text, cat) in enumerate(zip(ids, texts, cats)):
        sid = str(sid) if sid is not None else f"row{i}"
        if not isinstance(text, str) or not text.strip():
            dropped["empty text"] += 1
            continue
        if sid in seen:
            dropped["duplicate id"] += 1
            continue
        c = resolve(cat)
        if c is None:
            dropped["unknown category"] += 1
            continue
        seen.add(sid)
        rows.append({"seed_id": sid, "seed_text": text.strip(), "category": c.id, "category_text": c.name})
    schema = pa.schema([("seed_id", pa.string()), ("seed_text", pa.string()), ("category", pa.int32()), ("category_text", pa.string())])
    return pa.Table.from_pylist(rows, schema), dropped


def _structured(run: Run, spec: str, convs: list, model_cls: type[BaseModel], max_new_tokens: int, attempts: int) -> list[Any]:
    from .llm import Structured

    return run.model(spec).generate_structured(convs, Structured(schema=model_cls), run.sampling(max_new_tokens), attempts=attempts)


def step_extract_graph(run: Run, seeds: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .dedup import normalize

    rows = seeds.to_pylist()
    convs = [[{"role": "user", "content": template("extract_graph", seed=r["seed_text"])}] for r in rows]
    results = _structured(run, run.cfg.models.extractor, convs, Extraction, run.cfg.extract.max_new_tokens, run.cfg.extract.attempts)
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[int, int, str], int] = {}
    kept, dropped = [], {"extraction failed": 0}
    for r, res in zip(rows, results):
        if res.parsed is None:
            dropped["extraction failed"] += 1
            continue
        ids = []
        local: dict[str, int] = {}
        for e in res.parsed.entities:
            key = normalize([e.name])[0]
            if not key:
                continue
            if key not in nodes:
                nodes[key] = {"id": len(nodes), "name": e.name.strip(), "type": e.type, "categories": set(), "seeds": 0}
            n = nodes[key]
            n["categories"].add(r["category"])
            n["seeds"] += 1
            local[key] = n["id"]
            ids.append(n["id"])
        for rel in res.parsed.relations:
            a, b = normalize([rel.source])[0], normalize([rel.target])[0]
            if a in local and b in local and local[a] != local[b]:
                k = (local[a], local[b], rel.relation.strip().lower())
                edges[k] = edges.get(k, 0) + 1
        # Entities of one seed are related by co-occurrence even where no relation was named.
        for x, y in zip(ids, ids[1:]):
            if x != y:
                k = (x, y, "co-occurs with")
                edges[k] = edges.get(k, 0) + 1
        if ids:
            kept.append({**r, "node_ids": sorted(set(ids))})
        else:
            dropped["extraction failed"] += 1
    gdir = run.out / "graph"
    from .io import write_parquet

    node_list = sorted(nodes.values(), key=lambda n: n["id"])
    write_parquet(pa.table({
        "id": pa.array([n["id"] for n in node_list], pa.int64()), "name": [n["name"] for n in node_list],
        "type": [n["type"] for n in node_list], "categories": [sorted(n["categories"]) for n in node_list],
        "seeds": pa.array([n["seeds"] for n in node_list], pa.int32())}), gdir / "nodes.parquet")
    write_parquet(pa.table({
        "src": pa.array([k[0] for k in edges], pa.int64()), "dst": pa.array([k[1] for k in edges], pa.int64()),
        "relation": [k[2] for k in edges], "weight": pa.array(list(edges.values()), pa.float64())}), gdir / "edges.parquet")
    schema = seeds.schema.append(pa.field("node_ids", pa.list_(pa.int64())))
    return pa.Table.from_pylist(kept, schema), dropped


def step_sample_subgraphs(run: Run, seeds: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .graph import Graph

    nodes = pq.read_table(run.out / "graph" / "nodes.parquet")
    edges = pq.read_table(run.out / "graph" / "edges.parquet")
    names = nodes.column("name").to_pylist()
    sc = run.cfg.sample
    empty = pa.schema([("task_id", pa.string()), ("category", pa.int32()), ("category_text", pa.string()), ("seed_id", pa.string()),
                       ("seed_text", pa.string()), ("subgraph", pa.list_(pa.string())), ("relations", pa.string())])
    if seeds.num_rows == 0 or not names:
        return pa.Table.from_pylist([], empty), {}
    src, dst = edges.column("src").to_numpy(), edges.column("dst").to_numpy()
    g = Graph.from_edges(src, dst, num_nodes=len(names))
    rel = {}
    for a, b, r in zip(src.tolist(), dst.tolist(), edges.column("relation").to_pylist()):
        rel.setdefault((a, b), r)
    rng = np.random.default_rng(sc.seed)
    tasks, dropped = [], {"no connected subgraph": 0}
    by_cat: dict[int, list[dict[str, Any]]] = {}
    for r in seeds.to_pylist():
        by_cat.setdefault(r["category"], []).append(r)
    for cat in sorted(by_cat):
        members = by_cat[cat]
        made = 0
        for j in range(sc.tasks_per_category * 4):  # a few tries per wanted task
            if made >= sc.tasks_per_category:
                break
            seed_row = members[j % len(members)]
            start = int(rng.choice(seed_row["node_ids"]))
            k = int(rng.integers(sc.min_entities, sc.max_entities + 1))
            sub = [int(x) for x in g.subgraphs([start], k, seed=int(rng.integers(1 << 31)))[0] if x >= 0]
            if len(sub) < sc.min_entities:
                continue
            ents = [names[x] for x in sub]
            rels = [f"{names[a]} {rel[(a, b)]} {names[b]}" for a in sub for b in sub if (a, b) in rel]
            tasks.append({"task_id": f"c{cat}-t{made}", "category": cat, "category_text": seed_row["category_text"],
                          "seed_id": seed_row["seed_id"], "seed_text": seed_row["seed_text"], "subgraph": ents,
                          "relations": "; ".join(rels) or "none named"})
            made += 1
        if made == 0:
            dropped["no connected subgraph"] += len(members)
    return pa.Table.from_pylist(tasks, empty), dropped


def step_adversarial(run: Run, tasks: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    rows = tasks.to_pylist()
    ac = run.cfg.adversarial
    state = [{"feedback": "", "exchange": [], "accepted": None} for _ in rows]
    for rnd in range(1, ac.rounds + 1):
        todo = [i for i, s in enumerate(state) if s["accepted"] is None]
        if not todo:
            break
        convs = []
        for i in todo:
            r = rows[i]
            fb = state[i]["feedback"]
            convs.append([{"role": "user", "content": template(
                "generator", category=r["category_text"], entities=", ".join(r["subgraph"]), seed=r["seed_text"],
                relations=r["relations"], feedback=f"Feedback on your previous attempt: {fb}" if fb else "")}])
        cands = _structured(run, run.cfg.models.generator, convs, Candidate, ac.max_new_tokens, ac.attempts)
        have = [(i, c) for i, c in zip(todo, cands) if c.parsed is not None]
        for i, c in zip(todo, cands):
            if c.parsed is None:
                state[i]["exchange"].append({"round": rnd, "generator_error": c.error})
        reviews = _structured(run, run.cfg.models.discriminator,
                              [[{"role": "user", "content": template("discriminator", candidate=c.parsed.prompt)}] for _, c in have],
                              Review, ac.max_new_tokens, ac.attempts) if have else []
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
    out, dropped = [], {"not accepted within the rounds": 0}
    for r, s in zip(rows, state):
        if s["accepted"] is None:
            dropped["not accepted within the rounds"] += 1
            continue
        prompt, rnd = s["accepted"]
        out.append({**r, "prompt": prompt, "rounds": rnd, "exchange": json.dumps(s["exchange"])})
    schema = tasks.schema.append(pa.field("prompt", pa.string())).append(pa.field("rounds", pa.int32())).append(pa.field("exchange", pa.string()))
    return pa.Table.from_pylist(out, schema), dropped


def step_dedup(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .dedup import dedup_table
    from .io import read_table

    dc = run.cfg.dedup
    dropped = {"exact duplicate": 0, "near duplicate": 0, "copies a seed": 0, "in a reference set": 0, "too similar (embedding)": 0}
    if cands.num_rows == 0:
        return cands, dropped
    refs = []
    for ref in dc.against:
        p = Path(ref) if Path(ref).is_absolute() else run.base / ref
        if not p.exists():
            raise FrxError(f"dedup.against: {p} not found")
        t = read_table(p)
        if dc.against_column not in t.column_names:
            raise FrxError(f"dedup.against: column {dc.against_column!r} not found in {p}")
        refs.append(t.column(dc.against_column))
    # A candidate that copies (or nearly copies) a toxic seed is not a new benign prompt.
    seeds = pq.read_table(run.path("seeds"), columns=["seed_text"]).column("seed_text").combine_chunks()
    kept, _, summary = dedup_table(cands, "prompt", near_threshold=dc.near_threshold, reference=seeds)
    dropped["exact duplicate"] = summary.exact_duplicates
    dropped["near duplicate"] = summary.near_duplicates
    dropped["copies a seed"] = summary.reference_hits
    if refs and kept.num_rows:
        against = pa.concat_arrays([c.combine_chunks().cast(pa.string()) for c in refs])
        kept, _, summary = dedup_table(kept, "prompt", near_threshold=dc.near_threshold, reference=against)
        dropped["in a reference set"] = summary.reference_hits
    if dc.embed_model and dc.embed_model.lower() != "none" and kept.num_rows > 1:
        kept, n = _diversity(kept, dc.embed_model, dc.cosine_threshold)
        dropped["too similar (embedding)"] = n
    return kept, dropped


def _diversity(table: pa.Table, model: str, threshold: float) -> tuple[pa.Table, int]:
    """Greedy, per category, in row order: drop a candidate whose cosine to a kept one is ≥ threshold."""
    from .embed import embed, greedy_diverse

    vecs = embed(table.column("prompt").to_pylist(), model)
    cats = table.column("category").to_numpy()
    keep = np.zeros(table.num_rows, dtype=bool)
    for c in np.unique(cats):
        idx = np.flatnonzero(cats == c)
        keep[idx[greedy_diverse(vecs[idx], threshold)]] = True
    return table.filter(pa.array(keep)), int((~keep).sum())


def step_validate_pool(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .judge import judge

    vc = run.cfg.validate_pool
    prompts = cands.column("prompt").to_pylist()
    refusals = np.zeros(len(prompts), dtype=np.int32)
    outcomes: list[dict[str, str]] = [{} for _ in prompts]
    for spec in run.cfg.models.pool:
        if not prompts:
            break
        res = run.model(spec).generate([[{"role": "user", "content": p}] for p in prompts], run.sampling(vc.max_new_tokens, 0.0))
        labels = judge([r.text for r in res], [r.finish_reason for r in res], mode=vc.judge_mode).column("label").to_pylist()
        for i, lab in enumerate(labels):
            outcomes[i][spec] = lab
            refusals[i] += lab == "direct_refusal"
    keep = refusals >= vc.min_refusals
    run.notes["validate_pool"] = {"refused_by_any": int((refusals >= 1).sum())}
    t = cands.append_column("pool_refusals", pa.array(refusals, pa.int32()))
    t = t.append_column("pool_outcomes", pa.array([json.dumps(o) for o in outcomes], pa.string()))
    return t.filter(pa.array(keep)), {f"refused by fewer than {vc.min_refusals} pool model(s)": int((~keep).sum())}


def step_orchestrate(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    oc = run.cfg.orchestrate
    n = cands.num_rows
    if not oc.enabled:
        return cands.append_column("orchestrator_reason", pa.array(["orchestrator disabled"] * n, pa.string())), {}
    rows = cands.to_pylist()
    pool = str(len(run.cfg.models.pool))
    convs = [[{"role": "user", "content": template("orchestrator", category=r["category_text"], candidate=r["prompt"],
                                                   refusals=str(r["pool_refusals"]), pool=pool)}] for r in rows]
    res = _structured(run, run.cfg.models.orchestrator, convs, Verdict, oc.max_new_tokens, oc.attempts) if rows else []
    keep, reasons, dropped = [], [], {"orchestrator: not a valid case": 0, "orchestrator: no valid verdict": 0}
    for r in res:
        if r.parsed is None:
            dropped["orchestrator: no valid verdict"] += 1
            keep.append(False)
            reasons.append(None)
        else:
            keep.append(r.parsed.valid)
            reasons.append(r.parsed.reason)
            if not r.parsed.valid:
                dropped["orchestrator: not a valid case"] += 1
    t = cands.append_column("orchestrator_reason", pa.array(reasons, pa.string()))
    return t.filter(pa.array(keep, pa.bool_())), dropped


def step_respond(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .judge import judge

    rc = run.cfg.respond
    rows = cands.to_pylist()
    dropped = {"no valid instruct response": 0, "no valid reasoning response": 0, "response judged a refusal": 0}
    if not rows:
        t = cands.append_column("instruct_response", pa.array([], pa.string()))
        t = t.append_column("cot_response", pa.array([], DATASET_SCHEMA.field("cot_response").type))
        return t.append_column("response_label", pa.array([], pa.string())), dropped
    conv = lambda name, r: [{"role": "user", "content": template(name, candidate=r["prompt"])}]  # noqa: E731
    ins = _structured(run, run.cfg.models.responder, [conv("respond_instruct", r) for r in rows], InstructResponse, rc.max_new_tokens, rc.attempts)
    cot = _structured(run, run.cfg.models.responder, [conv("respond_cot", r) for r in rows], CotResponse, rc.max_new_tokens, rc.attempts)
    texts = [r.parsed.render() if r.parsed else None for r in ins]
    labels = judge(texts, prompts=[r["prompt"] for r in rows]).column("label").to_pylist()
    out = []
    for row, i, c, text, lab in zip(rows, ins, cot, texts, labels):
        if i.parsed is None:
            dropped["no valid instruct response"] += 1
        elif c.parsed is None:
            dropped["no valid reasoning response"] += 1
        elif lab not in rc.keep_labels:
            dropped["response judged a refusal"] += 1
        else:
            out.append({**row, "instruct_response": text, "cot_response": c.parsed.model_dump(), "response_label": lab})
    schema = cands.schema.append(pa.field("instruct_response", pa.string())).append(
        DATASET_SCHEMA.field("cot_response")).append(pa.field("response_label", pa.string()))
    return pa.Table.from_pylist(out, schema), dropped


def step_write_dataset(run: Run, rows: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .io import write_parquet

    n = rows.num_rows
    cols = {}
    for f in DATASET_SCHEMA:
        if f.name == "id":
            cols["id"] = pa.array([f"{run.run_id}-{i:06d}" for i in range(n)], pa.string())
        elif f.name == "run_id":
            cols["run_id"] = pa.array([run.run_id] * n, pa.string())
        else:
            cols[f.name] = rows.column(f.name).cast(f.type)
    ds = pa.table(cols, schema=DATASET_SCHEMA)
    ddir = run.out / "dataset"
    write_parquet(ds, ddir / "data" / "train-00000-of-00001.parquet")
    (ddir / "README.md").write_text(dataset_card(run, ds), encoding="utf-8")
    return ds, {}


def dataset_card(run: Run, ds: pa.Table) -> str:
    m = run.cfg.models
    return f"""---
configs:
- config_name: default
  data_files:
  - split: train
    path: data/train-*.parquet
license: other
task_categories:
- text-generation
tags:
- over-refusal
- safety
- frx
---

# Over-refusal prompts generated by frx

{ds.num_rows} prompts that look harmful but are benign, each with an instruct response and a
reasoning response, made by `frx generate` (run `{run.run_id}`) with the FalseReject method:
entity graphs from toxic seeds, an adversarial generator/discriminator loop, deduplication,
validation by a pool of models (kept if at least {run.cfg.validate_pool.min_refusals} refused),
an orchestrator's verdict, and structured responses re-judged before keeping.

Models: extractor `{m.extractor}`, generator `{m.generator}`, discriminator `{m.discriminator}`,
orchestrator `{m.orchestrator}`, responder `{m.responder}`, pool {", ".join(f"`{p}`" for p in m.pool)}.

Columns: `prompt`, `category` (frx taxonomy id), `category_text`, `instruct_response`,
`cot_response` (`reasoning_content`, `solution`), and provenance: `seed_id`, `subgraph`, `rounds`,
`exchange` (the generator/discriminator rounds, JSON), `pool_refusals`, `pool_outcomes` (JSON),
`orchestrator_reason`, `response_label`, `run_id`.

The funnel and quality measures are in `quality.json` / `quality.md` beside this dataset.
Load with `datasets.load_dataset("parquet", data_dir="<this folder>/data")` or by pointing
`load_dataset` at this folder.
"""
