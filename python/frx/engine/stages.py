"""Stages: named units that map a pyarrow Table to a pyarrow Table.

A stage declares its parameters (a pydantic model), the columns it reads and adds, and whether
it keeps state across shards (dedup stages do: a duplicate in shard 7 of a row in shard 2 is
still a duplicate). Stateful stages see shards in order; the engine saves, per finished shard,
the data their state was built from, so a resumed run rebuilds the same state.

Every table passing through the engine carries ``__frx_row``, the row's position in the whole
input; it makes sampling independent of sharding and is dropped before writing.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..columns import put_columns
from ..errors import FrxError

ROW = "__frx_row"

__all__ = ["Stage", "STAGES", "register", "build_stage", "StageResult", "ROW"]


@dataclass
class StageResult:
    table: pa.Table
    dropped: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # summed into stats.json (model calls, cache hits…)


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Stage:
    """Base class. Subclasses set ``name``, ``Params`` and implement ``run``."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = Params
    stateful: ClassVar[bool] = False

    def __init__(self, params: BaseModel, seed: int, base_dir: Path):
        self.p = params
        self.seed = seed
        self.base_dir = base_dir

    def reads(self) -> list[str]:
        return []

    def adds(self) -> dict[str, pa.DataType]:
        """Columns this stage adds (or replaces), with their types."""
        return {}

    def check(self, schema: pa.Schema) -> None:
        """Fail early (before any shard runs) if a needed column is missing or not text."""
        for c in self.reads():
            if c not in schema.names:
                raise FrxError(f"stage {self.name}: column {c!r} not found; columns are {', '.join(n for n in schema.names if n != ROW)}")

    def run(self, table: pa.Table) -> StageResult:
        raise NotImplementedError

    # Stateful stages: what to save per shard, and how to rebuild state from it.
    def state_of(self, table: pa.Table) -> pa.Table | None:
        return None

    def replay(self, state: pa.Table) -> None:
        pass


STAGES: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    STAGES[cls.name] = cls
    return cls


def build_stage(name: str, params: dict[str, Any], seed: int, base_dir: Path, where: str) -> Stage:
    if name in ("read", "write"):
        raise FrxError(f"{where}: '{name}' is configured by [{'input' if name == 'read' else 'output'}], not as a [[stage]]")
    cls = STAGES.get(name)
    if cls is None:
        raise FrxError(f"{where}: unknown stage {name!r}; stages are {', '.join(sorted(STAGES))}")
    try:
        p = cls.Params.model_validate(params)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "parameters"
        raise FrxError(f"{where} ({name}): {loc}: {err['msg']}") from None
    return cls(p, seed, base_dir)


def _text_check(stage: Stage, schema: pa.Schema, column: str) -> None:
    Stage.check(stage, schema)
    t = schema.field(column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t) or pa.types.is_string_view(t)):
        raise FrxError(f"stage {stage.name}: column {column!r} holds {t}, not text")


class _ColumnParams(Params):
    column: str = Field(description="Text column.")


# ---- built-in stages ---------------------------------------------------------------------------

@register
class Normalize(Stage):
    """Normalise a text column (NFKC, case folding, straight quotes, collapsed whitespace)."""

    name = "normalize"

    class Params(_ColumnParams):
        into: str | None = Field(None, description="Write to this column instead of replacing the input column.")

    def reads(self):
        return [self.p.column]

    def adds(self):
        return {self.p.into: pa.large_string()} if self.p.into else {}

    def check(self, schema):
        _text_check(self, schema, self.p.column)

    def run(self, table):
        from ..dedup import normalize

        col = pa.array(normalize(table.column(self.p.column)), type=pa.large_string())
        name = self.p.into or self.p.column
        if name in table.column_names:
            return StageResult(table.set_column(table.column_names.index(name), name, col))
        return StageResult(table.append_column(name, col))


class _CrossShardDedup(Stage):
    """Shared by the dedup stages: an index that sees every row of every shard, in order; a row
    is dropped when the index says it repeats an earlier one. Its state is the column it saw."""

    stateful = True
    reason: ClassVar[str]

    def reads(self):
        return [self.p.column]

    def check(self, schema):
        _text_check(self, schema, self.p.column)

    def run(self, table):
        base = len(self.index)
        ids = self.index.add(table.column(self.p.column))
        keep = ids == np.arange(base, base + len(ids))
        return StageResult(table.filter(pa.array(keep)), {self.reason: int((~keep).sum())})

    def state_of(self, table):
        return table.select([self.p.column])

    def replay(self, state):
        self.index.add(state.column(self.p.column))


@register
class DedupExact(_CrossShardDedup):
    """Drop rows whose normalised text equals an earlier row's, across all shards."""

    name = "dedup_exact"
    reason = "exact duplicate"
    Params = _ColumnParams

    def __init__(self, params, seed, base_dir):
        super().__init__(params, seed, base_dir)
        from ..dedup import ExactIndex

        self.index = ExactIndex()


@register
class DedupNear(_CrossShardDedup):
    """Drop near-duplicates (MinHash + LSH over word n-grams) of earlier rows, across all shards.

    A row is dropped when, as it is read, it joins a cluster holding an earlier row (estimated
    Jaccard >= threshold, transitively through rows read before it). This depends only on the
    rows before it, so the result is the same for every shard size.
    """

    name = "dedup_near"
    reason = "near duplicate"

    class Params(_ColumnParams):
        threshold: float = Field(0.7, gt=0, le=1, description="Estimated Jaccard similarity to call two rows near-duplicates.")
        num_perm: int = Field(128, ge=1, le=1024)
        ngram: int = Field(3, ge=1, le=16)
        seed: int | None = Field(None, ge=0, description="Hash seed (default: run.seed).")

    def __init__(self, params, seed, base_dir):
        super().__init__(params, seed, base_dir)
        from ..dedup import NearIndex

        p = self.p
        self.index = NearIndex(p.threshold, p.num_perm, p.ngram, seed if p.seed is None else p.seed)


@register
class RefusalMatch(Stage):
    """Scan a text column with the refusal matcher; adds refusal_hit and refusal_first_sentence."""

    name = "refusal_match"

    class Params(_ColumnParams):
        lexicon: str | None = Field(None, description="Lexicon file (default: frx's own).")

    def __init__(self, params, seed, base_dir):
        super().__init__(params, seed, base_dir)
        from ..refusal import Matcher

        lex = self.p.lexicon
        self.matcher = Matcher.default() if lex is None else Matcher.from_file(base_dir / lex)

    def reads(self):
        return [self.p.column]

    def adds(self):
        return {"refusal_hit": pa.bool_(), "refusal_first_sentence": pa.bool_()}

    def check(self, schema):
        _text_check(self, schema, self.p.column)

    def run(self, table):
        hit, opening = self.matcher.flags(table.column(self.p.column))
        return StageResult(put_columns(table, {"refusal_hit": hit, "refusal_first_sentence": opening}))


@register
class Judge(Stage):
    """Label responses (full_compliance, safe_partial_compliance, direct_refusal, undetermined);
    adds label, label_source, evidence, confidence and rule. See frx.judge."""

    name = "judge"

    class Params(Params):
        column: str = Field("response", description="Column holding the responses.")
        finish_reason_column: str | None = Field(None, description="Provider finish/stop reason column.")
        prompt_column: str | None = Field(None, description="Column holding the prompts (a feature of the learned judge).")
        mode: Literal["learned", "pattern"] = Field("learned", description="learned (rules + the calibrated classifier), or pattern (the rules alone).")

    def reads(self):
        return [self.p.column] + [c for c in (self.p.finish_reason_column, self.p.prompt_column) if c]

    def adds(self):
        return {"label": pa.string(), "label_source": pa.string(), "evidence": pa.string(), "confidence": pa.float64(),
                "rule": pa.string()}

    def check(self, schema):
        for c in self.reads():
            _text_check(self, schema, c)

    def run(self, table):
        from ..judge import judge

        reasons = table.column(self.p.finish_reason_column) if self.p.finish_reason_column else None
        prompts = table.column(self.p.prompt_column) if self.p.prompt_column else None
        verdict = judge(table.column(self.p.column), reasons, prompts=prompts, mode=self.p.mode)
        return StageResult(put_columns(table, {name: verdict.column(name) for name in verdict.column_names}))


_CMP = {ast.Eq: "__eq__", ast.NotEq: "__ne__", ast.Lt: "__lt__", ast.LtE: "__le__", ast.Gt: "__gt__", ast.GtE: "__ge__"}


def compile_filter(expr: str, columns: list[str]) -> pc.Expression:
    """A small, safe expression language over columns: comparisons (== != < <= > >=), and, or,
    not, parentheses, numbers, strings, true/false, ``len(col)`` (characters) and
    ``is_null(col)``. Example: ``refusal_hit == false and len(prompt) >= 10``."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError as e:
        raise FrxError(f"filter {expr!r}: not a valid expression ({e.msg})") from None

    def lit(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            return node.value
        if isinstance(node, ast.Name) and node.id in ("true", "false"):
            return node.id == "true"
        return None

    def conv(node):
        if isinstance(node, ast.BoolOp):
            parts = [conv(v) for v in node.values]
            out = parts[0]
            for x in parts[1:]:
                out = (out & x) if isinstance(node.op, ast.And) else (out | x)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~conv(node.operand)
        if isinstance(node, ast.Compare):
            if len(node.ops) != 1 or type(node.ops[0]) not in _CMP:
                raise FrxError(f"filter {expr!r}: use one comparison (== != < <= > >=) at a time")
            left, right = node.left, node.comparators[0]
            lv, rv = lit(left), lit(right)
            a = conv(left) if lv is None else pc.scalar(lv)
            b = conv(right) if rv is None else pc.scalar(rv)
            return getattr(a, _CMP[type(node.ops[0])])(b)
        if isinstance(node, ast.Name):
            if node.id in ("true", "false"):
                return pc.scalar(node.id == "true")
            if node.id not in columns:
                raise FrxError(f"filter {expr!r}: unknown column {node.id!r}")
            return pc.field(node.id)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) == 1 and not node.keywords:
            arg = conv(node.args[0])
            if node.func.id == "len":
                return pc.utf8_length(arg)
            if node.func.id == "is_null":
                return arg.is_null()
        raise FrxError(f"filter {expr!r}: unsupported syntax {ast.unparse(node)!r}")

    return conv(tree)


@register
class Filter(Stage):
    """Keep rows where an expression is true, e.g. ``refusal_hit == false and len(prompt) > 10``."""

    name = "filter"

    class Params(Params):
        expr: str = Field(description="Expression over columns: == != < <= > >=, and/or/not, len(col), is_null(col).")

    def check(self, schema):
        compile_filter(self.p.expr, [n for n in schema.names if n != ROW])

    def run(self, table):
        kept = table.filter(compile_filter(self.p.expr, table.column_names))
        return StageResult(kept, {f"filter: {self.p.expr}": table.num_rows - kept.num_rows})


def _row_uniform(rows: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per global row id and seed (SplitMix64), independent of shards."""
    z = rows.astype(np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


@register
class Sample(Stage):
    """Keep a seeded random share of the rows (the same rows whatever the shard size)."""

    name = "sample"

    class Params(Params):
        fraction: float = Field(gt=0, le=1, description="Share of rows to keep.")
        seed: int | None = Field(None, ge=0, description="Seed (default: run.seed).")

    def run(self, table):
        seed = self.seed if self.p.seed is None else self.p.seed
        u = _row_uniform(table.column(ROW).to_numpy(), seed)
        keep = u < self.p.fraction
        return StageResult(table.filter(pa.array(keep)), {"sample": int((~keep).sum())})


# The endpoints: documented here, configured by [input] and [output].
ENDPOINTS = {
    "read": "Read the input: [input] path = a file, a directory or a glob of Parquet, JSONL or CSV files; shard_rows = rows per shard (default 50000).",
    "write": "Write each shard's result to [output] path/data/part-NNNNN.parquet (zstd), atomically.",
}


_MODELS: dict[str, Any] = {}


def shared_model(spec: str, options: dict[str, Any], cache: bool = True) -> Any:
    """One loaded model per (spec, options) per process, reused across shards and stages."""
    import json

    from ..llm import load_model

    key = json.dumps([spec, options, cache], sort_keys=True)
    if key not in _MODELS:
        _MODELS[key] = load_model(spec, cache=cache, **options)
    return _MODELS[key]


class _ModelParams(Params):
    model: str = Field(description="Model spec: smollm2-135m, hf:DIR, vllm:MODEL, openai:MODEL@URL.")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options (hf: batch_size, threads, device, dtype; vllm: tensor_parallel_size, max_model_len; openai: concurrency, timeout_s, rpm, api_key_env).")
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_new_tokens: int = Field(256, ge=1)
    seed: int = Field(0)
    stop: list[str] = Field(default_factory=list)
    cache: bool = Field(True, description="Use the response cache (a re-run makes no repeated calls).")


@register
class Generate(Stage):
    """Generate a response for each prompt with a model (the response cache makes re-runs and
    resumed runs free); adds the response, finish reason, token counts, latency, error and model.
    A null prompt gets a null response and error "null prompt"; a failed call keeps its row with
    the error recorded."""

    name = "generate"

    class Params(_ModelParams):
        prompt_column: str = Field("prompt", description="Column holding the user prompts.")
        system_prompt: str | None = Field(None, description="Optional system message before each prompt.")
        output_column: str = Field("response", description="Column for the response text.")

    def reads(self):
        return [self.p.prompt_column]

    def adds(self):
        o = self.p.output_column
        return {o: pa.string(), "finish_reason": pa.string(), "prompt_tokens": pa.int32(), "completion_tokens": pa.int32(),
                "latency_s": pa.float32(), "error": pa.string(), "model": pa.string()}

    def check(self, schema):
        from ..llm import parse_spec

        _text_check(self, schema, self.p.prompt_column)
        parse_spec(self.p.model)  # a bad spec fails before any shard runs

    def sampling(self):
        from ..llm import Sampling

        return Sampling(temperature=self.p.temperature, top_p=self.p.top_p, max_new_tokens=self.p.max_new_tokens,
                        seed=self.p.seed, stop=tuple(self.p.stop))

    def run(self, table):
        model = shared_model(self.p.model, self.p.options, self.p.cache)
        prompts = table.column(self.p.prompt_column).to_pylist()
        idx = [i for i, p in enumerate(prompts) if p is not None]
        system = [] if self.p.system_prompt is None else [{"role": "system", "content": self.p.system_prompt}]
        before = dict(model.stats)
        results = model.generate([system + [{"role": "user", "content": prompts[i]}] for i in idx], self.sampling())
        n = table.num_rows
        text: list[str | None] = [None] * n
        finish = ["error"] * n
        ptok, ctok, lat = [0] * n, [0] * n, [0.0] * n
        err: list[str | None] = ["null prompt"] * n
        for i, r in zip(idx, results):
            text[i], finish[i], ptok[i], ctok[i], lat[i], err[i] = r.text, r.finish_reason, r.prompt_tokens, r.completion_tokens, r.latency_s, r.error
        cols = {self.p.output_column: pa.array(text, pa.string()), "finish_reason": pa.array(finish, pa.string()),
                "prompt_tokens": pa.array(ptok, pa.int32()), "completion_tokens": pa.array(ctok, pa.int32()),
                "latency_s": pa.array(lat, pa.float32()), "error": pa.array(err, pa.string()),
                "model": pa.array([self.p.model] * n, pa.string())}
        counters = {k: model.stats[k] - before.get(k, 0) for k in ("cache_hits", "cache_misses", "errors")}
        counters.update(prompt_tokens=sum(ptok), completion_tokens=sum(ctok), null_prompts=n - len(idx))
        return StageResult(put_columns(table, cols), counters=counters)


# The FalseReject agents (extract_graph, adversarial_generate, validate_pool, orchestrate, respond)
# are stages too; importing the module registers them.
from .. import agents as _agents  # noqa: E402,F401
