"""The batch engine behind `frx batch`: stages, shards, resumable runs, executors."""

from .run import Plan, make_plan, run_batch
from .stages import STAGES, Stage, StageResult, register

__all__ = ["Plan", "make_plan", "run_batch", "STAGES", "Stage", "StageResult", "register"]
