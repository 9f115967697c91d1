"""Labelled responses for training and evaluating the judge: read a file, map its labels to
frx's three classes, keep the prompt if there is one.

Label maps (``--label-map``, one per file or one for all):

- ``frx``: ``full_compliance``, ``safe_partial_compliance``, ``direct_refusal`` as they are;
- ``xstest``: XSTest's ``1_full_compliance`` / ``3_partial_refusal`` / ``2_full_refusal``;
- ``tone``: the tones of the chatgpt-refusals set (Reuter & Schulze 2023). ``complied`` is full
  compliance; ``rejected`` and ``counseling`` (declines, then only advises) are direct
  refusals; ``redirected`` (declines the request as asked, then answers a neighbouring one),
  ``disclaimed`` (a disclaimer, then an answer) and ``contradicted`` (disputes the premise, then
  answers in part) are safe partial compliance — each declines part of the request and answers
  the rest, XSTest's definition of a partial refusal. ``dontknow`` and ``incoherent`` are
  dropped (neither a refusal nor an answer), as the set's authors drop them;
- ``auto`` (default): whichever of the above holds every label in the file;
- inline, ``VALUE=CLASS,VALUE=CLASS,…``, where CLASS is one of frx's three names (or ``full``,
  ``partial``, ``direct``) and ``-`` drops the rows with that value.

A value the map does not know is an error naming it: nothing is guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import FrxError

#: The judge's three classes, in the order of every probability column.
CLASSES = ("full_compliance", "safe_partial_compliance", "direct_refusal")

__all__ = ["LABEL_MAPS", "RESPONSE_COLUMNS", "LABEL_COLUMNS", "PROMPT_COLUMNS", "parse_label_map", "read_labelled"]

DROP = "-"
LABEL_MAPS: dict[str, dict[str, str]] = {
    "frx": {c: c for c in CLASSES},
    "xstest": {"1_full_compliance": "full_compliance", "3_partial_refusal": "safe_partial_compliance", "2_full_refusal": "direct_refusal"},
    "tone": {"complied": "full_compliance", "rejected": "direct_refusal", "counseling": "direct_refusal",
             "redirected": "safe_partial_compliance", "disclaimed": "safe_partial_compliance",
             "contradicted": "safe_partial_compliance", "dontknow": DROP, "incoherent": DROP},
}
_SHORT = {"full": "full_compliance", "partial": "safe_partial_compliance", "direct": "direct_refusal"}
# Column names tried, in order, when the user names none.
RESPONSE_COLUMNS = ("response", "completion")
LABEL_COLUMNS = ("label", "final_label", "tone")
PROMPT_COLUMNS = ("prompt",)


def parse_label_map(spec: str) -> dict[str, str] | None:
    """A label map from its name or inline spec; ``None`` for ``auto``."""
    spec = spec.strip()
    if spec == "auto":
        return None
    if spec in LABEL_MAPS:
        return LABEL_MAPS[spec]
    if "=" not in spec:
        raise FrxError(f"label map {spec!r} is not one of auto, {', '.join(LABEL_MAPS)} nor VALUE=CLASS,… pairs")
    out = {}
    for pair in spec.split(","):
        value, sep, cls = pair.partition("=")
        value, cls = value.strip(), _SHORT.get(cls.strip(), cls.strip())
        if not sep or not value or (cls not in CLASSES and cls != DROP):
            raise FrxError(f"label map entry {pair.strip()!r}: want VALUE=CLASS with CLASS one of {', '.join(CLASSES)}, "
                           f"full, partial, direct or - (drop)")
        out[value] = cls
    return out


def _column(table: pa.Table, named: str | None, candidates: tuple[str, ...], what: str, path: Path, required: bool) -> str | None:
    if named is not None:
        if named not in table.column_names:
            raise FrxError(f"{path}: no {what} column {named!r}; columns are {', '.join(table.column_names)}")
        return named
    for c in candidates:
        if c in table.column_names:
            return c
    if required:
        raise FrxError(f"{path}: no {what} column (looked for {', '.join(candidates)}; name it with --{what}-column)")
    return None


def read_labelled(path: str | Path, label_map: str = "auto", *, response_column: str | None = None,
                  label_column: str | None = None, prompt_column: str | None = None, source: str | None = None) -> pa.Table:
    """A labelled file as a table ``response, prompt, label, source`` (``label`` one of
    :data:`frx.classifier.CLASSES`; ``prompt`` null where the file has none; ``source`` the file
    name unless given). Rows the map drops are left out; a null response or label is an error."""
    from .io import read_table

    path = Path(path)
    table = read_table(path)
    if table.num_rows == 0:
        raise FrxError(f"{path}: no rows")
    rc = _column(table, response_column, RESPONSE_COLUMNS, "response", path, True)
    lc = _column(table, label_column, LABEL_COLUMNS, "label", path, True)
    pcol = _column(table, prompt_column, PROMPT_COLUMNS, "prompt", path, False)
    for c in (rc, lc, pcol):
        if c is not None and not (pa.types.is_string(table.schema.field(c).type) or pa.types.is_large_string(table.schema.field(c).type)):
            if c == lc and pa.types.is_integer(table.schema.field(c).type):
                continue
            raise FrxError(f"{path}: column {c!r} holds {table.schema.field(c).type}, not text")
    labels = pc.cast(table.column(lc), pa.string())
    if labels.null_count:
        first = int(np.flatnonzero(labels.is_null().to_numpy(zero_copy_only=False))[0])
        raise FrxError(f"{path}: row {first + 1} has no label (column {lc!r})")
    values = pc.utf8_trim_whitespace(labels)
    seen = sorted(set(pc.unique(values).to_pylist()))
    mapping = parse_label_map(label_map)
    if mapping is None:
        fits = [name for name, m in LABEL_MAPS.items() if set(seen) <= set(m)]
        if not fits:
            raise FrxError(f"{path}: labels {', '.join(map(repr, seen[:6]))} fit no known label map ({', '.join(LABEL_MAPS)}); "
                           f"give one with --label-map, e.g. --label-map 'yes=direct,no=full'")
        mapping = LABEL_MAPS[fits[0]]
    unknown = [v for v in seen if v not in mapping]
    if unknown:
        raise FrxError(f"{path}: label {unknown[0]!r} is not in the label map (it knows {', '.join(sorted(mapping))})")
    keys = pa.array(sorted(mapping), pa.string())
    mapped = pa.array([mapping[k] for k in keys.to_pylist()], pa.string()).take(pc.index_in(values, value_set=keys))
    keep = pc.not_equal(mapped, DROP)
    responses = table.column(rc)
    if responses.null_count:
        first = int(np.flatnonzero(responses.is_null().to_numpy(zero_copy_only=False))[0])
        raise FrxError(f"{path}: row {first + 1} has no response (column {rc!r})")
    prompts = table.column(pcol) if pcol is not None else pa.nulls(table.num_rows, pa.string())
    out = pa.table({"response": pc.cast(responses, pa.string()), "prompt": pc.cast(prompts, pa.string()), "label": mapped,
                    "source": pa.array([source or path.name] * table.num_rows, pa.string())}).filter(keep)
    if out.num_rows == 0:
        raise FrxError(f"{path}: the label map drops every row")
    return out


def label_index(labels: Any) -> np.ndarray:
    """Class indices (into :data:`CLASSES`) of a column of frx class names."""
    idx = pc.index_in(labels, value_set=pa.array(CLASSES, pa.string()))
    if idx.null_count:
        raise FrxError("labels must be frx class names")
    return idx.to_numpy(zero_copy_only=False).astype(np.int64)
