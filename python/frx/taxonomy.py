"""frx's 44 safety categories (``data/categories.toml``): ids, names and the aliases that map
category labels found in seed files (HarmBench, CoCoNot, …) to an id."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

from .config import tomllib


@dataclass(frozen=True)
class Category:
    id: int
    name: str
    aliases: tuple[str, ...]


@lru_cache(maxsize=1)
def categories() -> tuple[Category, ...]:
    data = tomllib.loads(resources.files("frx").joinpath("data/categories.toml").read_text("utf-8"))
    return tuple(Category(int(c["id"]), c["name"], tuple(c.get("aliases", []))) for c in data["category"])


@lru_cache(maxsize=1)
def _lookup() -> dict[str, Category]:
    table: dict[str, Category] = {}
    for c in categories():
        for key in (str(c.id), c.name, *c.aliases):
            table[key.strip().lower()] = c
    return table


def resolve(value: Any) -> Category | None:
    """The category for an id (int or digits), a name or an alias, ignoring case; None if unknown."""
    if value is None:
        return None
    return _lookup().get(str(value).strip().lower())
