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

from .agents import COT_TYPE
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
    judge_mode: Literal["learned", "pattern"] = "learned"


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
    license: str = Field("other", description="Licence of the dataset, for its card (a Hugging Face licence id such as "
                         "cc-by-4.0); generated text also carries the terms of the models that wrote it.")


class RunSection(_Strict):
    """How the model steps run: each is a `frx batch` stage over shards of its input."""

    executor: Literal["local", "ray"] = Field("local", description="local, or ray (Ray Data over a local or remote cluster).")
    shard_rows: int = Field(256, ge=1, description="Rows per shard: the unit of resume (a crash loses at most the shards in flight).")
    workers: int = Field(1, ge=1, le=256, description="Local executor: worker processes, each with its own copy of the models.")
    address: str | None = Field(None, description="Ray cluster address; default: start Ray locally.")
    gpus: float = Field(0.0, ge=0.0, description="Ray executor: GPUs each task asks for (1 = one vLLM engine per GPU).")
    parallelism: int | None = Field(None, ge=1, description="Ray executor: tasks each shard is split into (default: the cluster's CPUs, or GPUs / gpus).")


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
    run: RunSection = Field(default_factory=RunSection)

    def hash(self) -> str:
        """What determines the results: everything but where the output goes and how it runs."""
        d = self.model_dump(mode="json", exclude={"output", "run"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()


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


# ---- the run -------------------------------------------------------------------------------

STEPS = ("seeds", "extract_graph", "sample_subgraphs", "adversarial_generate", "dedup", "validate_pool",
         "orchestrate", "respond", "write_dataset")

DATASET_SCHEMA = pa.schema([
    ("id", pa.string()), ("prompt", pa.string()), ("category", pa.int32()), ("category_text", pa.string()),
    ("instruct_response", pa.string()),
    ("cot_response", COT_TYPE),
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
    progress: Callable[[str], None] = print
    quiet: bool = False
    counters: dict[str, dict[str, int]] = field(default_factory=dict)  # per step: model calls, cache hits, tokens…

    @property
    def run_id(self) -> str:
        return self.cfg.hash()[:16]

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


def run_generate(cfg: GenerateConfig, base: Path, *, restart: bool = False, progress: Callable[[str], None] = print,
                 quiet: bool = False) -> dict[str, Any]:
    """Run (or resume) the pipeline; returns the quality report."""
    out = Path(cfg.output.dir)
    if not out.is_absolute():
        out = base / out
    run = Run(cfg, base, out, progress=progress, quiet=quiet)
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
        rows_in = table.num_rows
        table, dropped = fn(run, table)
        if os.environ.get("FRX_FAULT") == f"generate:{name}":  # test hook: die before the step is saved
            os.kill(os.getpid(), signal.SIGKILL)
        if name == "seeds":
            rows_in = table.num_rows + sum(dropped.values())  # the rows read from the seed file
        run.save(name, table)
        counters = {"model_calls": 0, "cache_hits": 0, "tokens": 0, **run.counters.get(name, {})}
        run.record(name, rows_in, table.num_rows, dropped, time.perf_counter() - t0, **counters)
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


def _agent(run: Run, step: str, table: pa.Table, use: str, params: dict[str, Any]) -> tuple[pa.Table, dict[str, int]]:
    """Run one of the agent stages (frx.agents) over the previous step's output as a `frx batch`
    run in OUT/steps/NN-STEP/: sharded, resumable shard by shard, on the configured executor.
    Its counters (model calls, cache hits, tokens) go to the funnel."""
    from .config import BatchConfig
    from .engine.run import execute, make_plan
    from .engine.stages import ROW, build_stage

    params = {"options": run.cfg.models.options, "seed": run.cfg.models.seed, **params}
    if table.num_rows == 0:  # nothing to shard: the stage adds its (empty) columns
        st = build_stage(use, params, run.cfg.models.seed, run.base, f"[{step}]")
        res = st.run(table.append_column(ROW, pa.array([], pa.int64())))
        return res.table.drop_columns([ROW]), {}
    rc = run.cfg.run
    k = STEPS.index(step)
    cfg = BatchConfig.model_validate({
        "input": {"path": str(run.path(STEPS[k - 1])), "shard_rows": rc.shard_rows},
        "stage": [{"use": use, **params}],
        "output": {"path": str(run.out / "steps" / f"{k:02d}-{step}")},
        "run": {"executor": rc.executor, "seed": run.cfg.models.seed, "workers": rc.workers, "address": rc.address,
                "gpus": rc.gpus, "parallelism": rc.parallelism},
    })
    plan = make_plan(cfg, run.base)
    plan.label = f"frx generate: {step}"
    stats = execute(plan, quiet=run.quiet)
    st = stats["stages"][1]
    run.counters[step] = dict(st["counters"])
    parts = [pq.read_table(plan.run_dir / "data" / f"part-{i:05d}.parquet") for i in range(len(plan.shards))]
    return pa.concat_tables(parts), dict(st["dropped"])


def step_extract_graph(run: Run, seeds: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .dedup import normalize

    ec = run.cfg.extract
    got, dropped = _agent(run, "extract_graph", seeds, "extract_graph", {
        "model": run.cfg.models.extractor, "column": "seed_text", "temperature": run.cfg.models.temperature,
        "max_new_tokens": ec.max_new_tokens, "attempts": ec.attempts})
    dropped = {"extraction failed": dropped.get("extraction failed", 0)}
    nodes: dict[str, dict[str, Any]] = {}
    edges: dict[tuple[int, int, str], int] = {}
    kept = []
    for r in got.to_pylist():
        ids = []
        local: dict[str, int] = {}
        for e in r["entities"]:
            key = normalize([e["name"]])[0]
            if not key:
                continue
            if key not in nodes:
                nodes[key] = {"id": len(nodes), "name": e["name"].strip(), "type": e["type"], "categories": set(), "seeds": 0}
            n = nodes[key]
            n["categories"].add(r["category"])
            n["seeds"] += 1
            local[key] = n["id"]
            ids.append(n["id"])
        for rel in r["relations"]:
            a, b = normalize([rel["source"]])[0], normalize([rel["target"]])[0]
            if a in local and b in local and local[a] != local[b]:
                k = (local[a], local[b], rel["relation"].strip().lower())
                edges[k] = edges.get(k, 0) + 1
        # Entities of one seed are related by co-occurrence even where no relation was named.
        for x, y in zip(ids, ids[1:]):
            if x != y:
                k = (x, y, "co-occurs with")
                edges[k] = edges.get(k, 0) + 1
        if ids:
            kept.append({**{c: r[c] for c in seeds.column_names}, "node_ids": sorted(set(ids))})
        else:
            dropped["extraction failed"] += 1
    gdir = run.out / "graph"
    from .io import write_parquet

    node_list = sorted(nodes.values(), key=lambda n: n["id"])
    write_parquet(pa.table({
        "id": pa.array([n["id"] for n in node_list], pa.int64()), "name": pa.array([n["name"] for n in node_list], pa.string()),
        "type": pa.array([n["type"] for n in node_list], pa.string()),
        "categories": pa.array([sorted(n["categories"]) for n in node_list], pa.list_(pa.int32())),
        "seeds": pa.array([n["seeds"] for n in node_list], pa.int32())}), gdir / "nodes.parquet")
    write_parquet(pa.table({
        "src": pa.array([k[0] for k in edges], pa.int64()), "dst": pa.array([k[1] for k in edges], pa.int64()),
        "relation": pa.array([k[2] for k in edges], pa.string()), "weight": pa.array(list(edges.values()), pa.float64())}),
        gdir / "edges.parquet")
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
    tasks, dropped = [], {"no connected subgraph": 0, "over the per-category quota": 0}
    by_cat: dict[int, list[dict[str, Any]]] = {}
    for r in seeds.to_pylist():
        by_cat.setdefault(r["category"], []).append(r)
    for cat in sorted(by_cat):
        members = by_cat[cat]
        made = 0
        used: set[int] = set()
        tried: set[int] = set()
        for j in range(sc.tasks_per_category * 4):  # a few tries per wanted task
            if made >= sc.tasks_per_category:
                break
            seed_row = members[j % len(members)]
            tried.add(j % len(members))
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
            used.add(j % len(members))
            made += 1
        # Every seed is accounted for: it gave a task, or its tries found no connected subgraph,
        # or its category had its quota of tasks before its turn came.
        dropped["no connected subgraph"] += len(tried - used)
        dropped["over the per-category quota"] += len(members) - len(tried)
    return pa.Table.from_pylist(tasks, empty), dropped


def step_adversarial(run: Run, tasks: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    ac, m = run.cfg.adversarial, run.cfg.models
    return _agent(run, "adversarial_generate", tasks, "adversarial_generate", {
        "generator": m.generator, "discriminator": m.discriminator, "rounds": ac.rounds, "temperature": m.temperature,
        "max_new_tokens": ac.max_new_tokens, "attempts": ac.attempts})


def step_dedup(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .dedup import dedup_table
    from .io import read_table

    dc = run.cfg.dedup
    cands, dropped = _gate_prompts(cands)
    dropped.update({"exact duplicate": 0, "near duplicate": 0, "in a reference set": 0, "too similar (embedding)": 0})
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
    dropped["copies a seed"] += summary.reference_hits  # a near copy the word gate let through
    if refs and kept.num_rows:
        against = pa.concat_arrays([c.combine_chunks().cast(pa.string()) for c in refs])
        kept, _, summary = dedup_table(kept, "prompt", near_threshold=dc.near_threshold, reference=against)
        dropped["in a reference set"] = summary.reference_hits
    if dc.embed_model and dc.embed_model.lower() != "none" and kept.num_rows > 1:
        kept, n = _diversity(kept, dc.embed_model, dc.cosine_threshold)
        dropped["too similar (embedding)"] = n
    return kept, dropped


def prompt_gate_reasons(cands: pa.Table) -> list[str | None]:
    """For each candidate (``prompt``, ``seed_text``, ``category``, ``category_text``), the
    prompt gate it fails (:func:`frx.gates.prompt_gate`), or None."""
    from .gates import prompt_gate
    from .taxonomy import categories

    names = {c.id: (c.name, *c.aliases) for c in categories()}
    return [prompt_gate(r["prompt"], r["seed_text"], (r["category_text"], *names.get(r["category"], ())))
            for r in cands.select(["prompt", "seed_text", "category", "category_text"]).to_pylist()]


def _gate_prompts(cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """The prompt gates, each failure a drop reason."""
    dropped = {"names a category": 0, "copies a seed": 0, "too short": 0, "not a request": 0}
    why = prompt_gate_reasons(cands)
    for w in why:
        if w:
            dropped[w] += 1
    return cands.filter(pa.array([w is None for w in why], pa.bool_())), dropped


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
    vc = run.cfg.validate_pool
    return _agent(run, "validate_pool", cands, "validate_pool", {
        "pool": run.cfg.models.pool, "min_refusals": vc.min_refusals, "judge_mode": vc.judge_mode, "temperature": 0.0,
        "max_new_tokens": vc.max_new_tokens})


def step_orchestrate(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    oc = run.cfg.orchestrate
    if not oc.enabled:
        return cands.append_column("orchestrator_reason", pa.array(["orchestrator disabled"] * cands.num_rows, pa.string())), {}
    return _agent(run, "orchestrate", cands, "orchestrate", {
        "model": run.cfg.models.orchestrator, "pool_size": len(run.cfg.models.pool), "temperature": run.cfg.models.temperature,
        "max_new_tokens": oc.max_new_tokens, "attempts": oc.attempts})


def step_respond(run: Run, cands: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    from .gates import response_gate

    rc = run.cfg.respond
    out, dropped = _agent(run, "respond", cands, "respond", {
        "model": run.cfg.models.responder, "keep_labels": rc.keep_labels, "temperature": run.cfg.models.temperature,
        "max_new_tokens": rc.max_new_tokens, "attempts": rc.attempts})
    why = [response_gate(x) for x in out.column("instruct_response").to_pylist()] if out.num_rows else []
    dropped = {**dropped, "response repeats itself": sum(w is not None for w in why)}
    return out.filter(pa.array([w is None for w in why], pa.bool_())), dropped


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
license: {run.cfg.output.license}
task_categories:
- text-generation
tags:
- over-refusal
- safety
- frx
---

# Over-refusal prompts generated by frx

{ds.num_rows} {"prompt" if ds.num_rows == 1 else "prompts"} that look harmful but are benign, each with an instruct response and a
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

## Citation

The method is FalseReject's; if you use this data, cite it:

```bibtex
@article{{zhang2025falsereject,
  title   = {{FalseReject: A Resource for Improving Contextual Safety and Mitigating Over-Refusals in LLMs via Structured Reasoning}},
  author  = {{Zhang, Zhehao and Xu, Weijie and Wu, Fanyou and Reddy, Chandan K.}},
  journal = {{arXiv preprint arXiv:2505.08054}},
  year    = {{2025}}
}}
```
"""
