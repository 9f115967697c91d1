"""Schema-guided decoding for the transformers backend: structured output a small model cannot
get wrong.

The JSON skeleton comes from the schema and is written by frx; the model only ever fills a gap:
a string value (generated until its closing quote), a choice among an enum's values or true/false
(picked by the mean log-probability of each option), or whether a list goes on (``, `` vs ``]``,
within the schema's length bounds). So the result always parses and validates, whatever the
model; what a weak model puts in the strings is still weak. Supported schemas: objects whose
fields are strings, enums/Literals, booleans, integers (as a choice of 0–9) and lists of those or
of objects (pydantic's ``$ref``/``$defs`` resolved). Fields are filled in schema order, all of
them, so optional fields get a value too.
"""

from __future__ import annotations

import json
from typing import Any, Callable

MAX_STRING_TOKENS = 96
MAX_LIST_ITEMS = 8


def supported(schema: dict[str, Any]) -> bool:
    defs = schema.get("$defs", {})

    def ok(s: dict[str, Any], depth: int = 0) -> bool:
        if depth > 8:
            return False
        if "$ref" in s:
            return ok(defs.get(s["$ref"].split("/")[-1], {}), depth + 1)
        if "enum" in s or "const" in s:
            return True
        t = s.get("type")
        if t == "object":
            return bool(s.get("properties")) and all(ok(p, depth + 1) for p in s["properties"].values())
        if t == "array":
            return ok(s.get("items", {}), depth + 1)
        return t in ("string", "boolean", "integer")

    return ok(schema)


class GuidedDecoder:
    """``gen_string(prefix_text) -> str`` continues the JSON text with a string body (without the
    closing quote); ``choose(prefix_text, options) -> int`` picks an option."""

    def __init__(self, gen_string: Callable[[str], str], choose: Callable[[str, list[str]], int]):
        self.gen_string = gen_string
        self.choose = choose

    def run(self, schema: dict[str, Any]) -> str:
        self.defs = schema.get("$defs", {})
        self.text = ""
        self._value(schema)
        return self.text

    def _resolve(self, s: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in s:
            s = self.defs[s["$ref"].split("/")[-1]]
        return s

    def _value(self, s: dict[str, Any]) -> None:
        s = self._resolve(s)
        if "const" in s:
            self.text += json.dumps(s["const"])
            return
        if "enum" in s:
            options = [json.dumps(v) for v in s["enum"]]
            self.text += options[self.choose(self.text, options)]
            return
        t = s.get("type")
        if t == "object":
            self.text += "{"
            for k, (name, prop) in enumerate(s["properties"].items()):
                self.text += ("" if k == 0 else ", ") + json.dumps(name) + ": "
                self._value(prop)
            self.text += "}"
        elif t == "array":
            lo = int(s.get("minItems", 0))
            hi = min(int(s.get("maxItems", MAX_LIST_ITEMS)), MAX_LIST_ITEMS)
            self.text += "["
            n = 0
            while n < hi:
                if n >= lo:
                    first = self._first_char(s.get("items", {}))
                    go = (", " if n else "") + first
                    if self.choose(self.text, ["]", go]) == 0:
                        break
                if n:
                    self.text += ", "
                self._value(s.get("items", {}))
                n += 1
            self.text += "]"
        elif t == "boolean":
            self.text += ["true", "false"][self.choose(self.text, ["true", "false"])]
        elif t == "integer":
            self.text += str(self.choose(self.text, [str(d) for d in range(10)]))
        else:  # string
            self.text += '"'
            body = self.gen_string(self.text)
            self.text += json.dumps(_clean(body))[1:-1] + '"'

    def _first_char(self, s: dict[str, Any]) -> str:
        s = self._resolve(s)
        t = s.get("type")
        return {"object": "{", "array": "[", "string": '"'}.get(t, "")


def _clean(body: str) -> str:
    """A generated string body: up to the first unescaped quote or newline, trimmed."""
    out = []
    for ch in body:
        if ch in '"\n':
            break
        out.append(ch)
    return "".join(out).replace("\\", "").strip()
