"""`frx batch` configuration: a TOML file validated by pydantic, with `--set` overrides.

```toml
[input]
path = "prompts.parquet"   # a file, a directory or a glob; Parquet, JSONL or CSV
shard_rows = 50000

[[stage]]
use = "dedup_near"
column = "prompt"
threshold = 0.7

[output]
path = "runs/demo"         # the run directory

[run]
executor = "local"
seed = 0
```

Relative paths are taken from the directory of the config file. ``--set stage.1.threshold=0.8``
changes a value (stages are numbered from 1, as they appear in the file); the value is read as
TOML (``0.8``, ``true``, ``"text"``), or as a plain string if it is not valid TOML.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import FrxError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["BatchConfig", "InputConfig", "StageConfig", "OutputConfig", "RunConfig", "load_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InputConfig(_Strict):
    path: str = Field(description="A file, a directory or a glob of Parquet, JSONL or CSV files.")
    shard_rows: int = Field(50_000, ge=1, le=100_000_000, description="Rows per shard.")


class StageConfig(BaseModel):
    """One [[stage]] block: ``use`` names the stage; every other key is one of its parameters."""

    model_config = ConfigDict(extra="allow")
    use: str


class OutputConfig(_Strict):
    path: str = Field(description="The run directory; result shards go to PATH/data/.")


class RunConfig(_Strict):
    executor: Literal["local", "ray"] = "local"
    seed: int = Field(0, ge=0, lt=2**63)
    workers: int = Field(
        1, ge=1, le=256,
        description="Local executor: worker processes that read shards and run the stages before the first "
        "cross-shard stage, a few shards ahead (1 = all in this process).",
    )
    address: str | None = Field(None, description="Ray cluster address (ray executor); default: start Ray locally.")
    gpus: float = Field(0.0, ge=0.0, description="Ray executor: GPUs each task asks Ray for (e.g. 1 for a vLLM model per GPU).")
    parallelism: int | None = Field(
        None, ge=1, le=100_000,
        description="Ray executor: tasks each shard is split into (default: the cluster's CPUs, or its GPUs / gpus).")


class BatchConfig(_Strict):
    input: InputConfig
    stage: list[StageConfig] = Field(default_factory=list)
    output: OutputConfig
    run: RunConfig = Field(default_factory=RunConfig)

    def stage_params(self, i: int) -> dict[str, Any]:
        return {k: v for k, v in self.stage[i].model_dump().items() if k != "use"}

    def identity(self) -> dict[str, Any]:
        """What determines the results: everything but where and how it runs."""
        d = self.model_dump()
        d["run"] = {"seed": d["run"]["seed"]}
        d["output"] = {}
        return d

    def hash(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one ``a.b.c=value`` to the raw TOML dict (``stage.N`` counts from 1)."""
    if "=" not in assignment:
        raise FrxError(f"--set {assignment!r}: expected KEY=VALUE, e.g. stage.1.threshold=0.8")
    key, value = assignment.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise FrxError(f"--set {assignment!r}: empty key")
    node: Any = raw
    for j, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            if not part.isdigit() or not 1 <= int(part) <= len(node):
                raise FrxError(f"--set {key}: there is no {'.'.join(parts[:j])} number {part} (1..{len(node)})")
            node = node[int(part) - 1]
        else:
            node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise FrxError(f"--set {key}: {'.'.join(parts[: j + 1])} is not a table")
    if isinstance(node, list):
        raise FrxError(f"--set {key}: name a field of one {parts[-2]}, e.g. {parts[-2]}.1.{parts[-1]}")
    node[parts[-1]] = _parse_value(value.strip())


def _loc(err: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = list(err["loc"])
    if len(loc) >= 2 and loc[0] == "stage" and isinstance(loc[1], int):
        use = raw.get("stage", [{}])[loc[1]].get("use", "?") if loc[1] < len(raw.get("stage", [])) else "?"
        return f"[[stage]] #{loc[1] + 1} ({use})" + "".join(f".{p}" for p in loc[2:])
    return ".".join(str(p) for p in loc) if loc else "config"


def validation_message(e: ValidationError, raw: dict[str, Any], source: str) -> str:
    err = e.errors()[0]
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{source}: {_loc(err, raw)}: {err['msg']}{more}"


def read_toml(path: str | Path, overrides: list[str] = ()) -> dict[str, Any]:
    """A TOML config file as a dict, with ``--set`` overrides applied; clear errors."""
    p = Path(path)
    if not p.is_file():
        raise FrxError(f"config not found: {p}")
    try:
        raw = tomllib.loads(p.read_text("utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise FrxError(f"{p}: invalid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise FrxError(f"cannot read {p}: {e}") from None
    for o in overrides:
        apply_override(raw, o)
    return raw


def load_config(path: str | Path, overrides: list[str] = ()) -> tuple[BatchConfig, Path]:
    """Read, override and validate a config file. Returns the config and its directory."""
    p = Path(path)
    raw = read_toml(p, overrides)
    if isinstance(raw.get("stage"), dict):
        raise FrxError(f"{p}: write stages as [[stage]] (an array of tables), not [stage]")
    try:
        cfg = BatchConfig.model_validate(raw)
    except ValidationError as e:
        raise FrxError(validation_message(e, raw, str(p))) from None
    return cfg, p.resolve().parent
