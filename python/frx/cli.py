"""The ``frx`` command line. Every user error prints one line and exits with status 2."""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import numpy as np
import pyarrow as pa
import typer

from . import __version__
from .columns import pick_column, put_columns
from .errors import FrxError

app = typer.Typer(
    name="frx",
    help="Find, make and fix over-refusal in large language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _err(msg: str) -> None:
    print(f"frx: error: {msg}", file=sys.stderr)


def user_errors(fn):
    """Turn FrxError into one line on stderr and exit status 2; Ctrl-C into status 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except FrxError as e:
            _err(str(e))
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        print(f"frx {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """frx: over-refusal tooling. Run `frx COMMAND --help` for each command."""


def _string_column(table: pa.Table, column: str, path: Path) -> None:
    if column not in table.column_names:
        cols = ", ".join(table.column_names) or "(none)"
        raise FrxError(f"column {column!r} not found in {path}; columns are {cols}")
    t = table.schema.field(column).type
    if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
            or pa.types.is_string_view(t)):
        bad = _first_non_utf8(table[column]) if pa.types.is_binary(t) or pa.types.is_large_binary(t) else -1
        if bad >= 0:  # how Arrow reads a CSV that is not UTF-8
            raise FrxError(f"column {column!r} in {path} is not valid UTF-8 text (row {bad + 1}); "
                           "re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8")
        raise FrxError(f"column {column!r} in {path} holds {t}, not text")


def _first_non_utf8(col: pa.ChunkedArray) -> int:
    """Index of the first value that does not decode as UTF-8 (-1 if none)."""
    for i, v in enumerate(col.to_pylist()):
        if v is not None:
            try:
                v.decode("utf-8")
            except UnicodeDecodeError:
                return i
    return -1


def _summary(title: str, rows: list[tuple[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    console.print(title, soft_wrap=True)
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right" if all(isinstance(v, int) for _, v in rows) else "left")
    for k, v in rows:
        t.add_row(f"  {k}", f"{v:,}" if isinstance(v, int) else str(v))
    console.print(t)


@app.command()
@user_errors
def dedup(
    input: Annotated[Path, typer.Argument(help="Parquet, JSONL or CSV file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file (kept rows).")],
    column: Annotated[str, typer.Option(help="Text column to deduplicate.")] = "prompt",
    near_threshold: Annotated[
        float, typer.Option(help="Estimated Jaccard similarity (word 3-grams) to call two rows near-duplicates, in (0, 1].")
    ] = 0.7,
    exact_only: Annotated[bool, typer.Option("--exact-only", help="Only remove exact duplicates (after normalisation).")] = False,
    against: Annotated[
        Optional[Path], typer.Option(help="Reference file: drop rows that copy or nearly copy any of its rows (contamination check).")
    ] = None,
    against_column: Annotated[str, typer.Option(help="Text column of the reference file.")] = "prompt",
    num_perm: Annotated[int, typer.Option(help="MinHash permutations.")] = 128,
    ngram: Annotated[int, typer.Option(help="Words per shingle.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the MinHash functions.")] = 0,
    report: Annotated[
        Optional[Path], typer.Option(help="Also write the dropped rows (row, reason, duplicate_of, text, and with an id column the row's id and duplicate_of_id) as Parquet.")
    ] = None,
    id_column: Annotated[Optional[str], typer.Option(help="Id column carried into the report. Default: id if present.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Remove exact and near-duplicate rows of a text column; keep the first of each cluster.

    Texts are compared after normalisation (NFKC, case folding, straight quotes, collapsed whitespace). Near-duplicates are found with MinHash + LSH over word n-grams and clustered transitively. With --against, rows that copy a reference set are dropped too.
    """
    from .dedup import _check_params, dedup_file
    from .io import check_output, read_table

    _check_params(near_threshold, num_perm, ngram, seed)
    check_output(out, overwrite=overwrite, inputs=(input, against))
    if report is not None:
        check_output(report, overwrite=overwrite, inputs=(input, against))
        if report.resolve() == out.resolve():
            raise FrxError("--report and --out must be different files")
    from .io import iter_batches

    head = next(iter_batches(input, batch_rows=1024), None)
    head = pa.Table.from_batches([head]) if head is not None else read_table(input)
    _string_column(head, column, input)
    id_col = pick_column(head.column_names, id_column, "id", input)
    reference = None
    if against is not None:
        ref_table = read_table(against)
        _string_column(ref_table, against_column, against)
        reference = ref_table.column(against_column)
    # Streamed: one pass over the text (and id) column decides, a second writes; memory holds
    # the indexes, not the file.
    s = dedup_file(input, out, column, report=report, near_threshold=None if exact_only else near_threshold, num_perm=num_perm,
                   ngram=ngram, seed=seed, reference=reference, id_column=id_col)
    rows = list(s.as_dict().items())
    if exact_only:
        rows = [r for r in rows if r[0] != "near_duplicates"]
    if against is None:
        rows = [r for r in rows if r[0] != "reference_hits"]
    _summary(f"frx dedup → {out}", [(k.replace("_", " "), v) for k, v in rows])


@app.command()
@user_errors
def refusal(
    input: Annotated[Path, typer.Argument(help="Parquet, JSONL or CSV file.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    column: Annotated[str, typer.Option(help="Text column to scan (model responses).")] = "response",
    lexicon: Annotated[
        Optional[Path], typer.Option(help="Lexicon file (one phrase per line, 're:' for a regex). Default: frx's own.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Scan a text column for refusal phrases; add refusal_hit and refusal_first_sentence.

    This is the pattern matcher only: it says where refusal-like phrases occur (and whether one opens the response), not whether the response is a refusal; judging is a separate step.
    """
    from .io import check_output, read_table, write_parquet
    from .refusal import Matcher

    check_output(out, overwrite=overwrite, inputs=(input,))
    matcher = Matcher.from_file(lexicon) if lexicon is not None else Matcher.default()
    table = read_table(input)
    _string_column(table, column, input)
    hit, opening = matcher.flags(table.column(column))
    table = put_columns(table, {"refusal_hit": hit, "refusal_first_sentence": opening})
    write_parquet(table, out)
    _summary(
        f"frx refusal → {out}",
        [("rows", len(hit)), ("with a match", int(hit.sum())), ("match in first sentence", int(opening.sum()))],
    )


_MODE_HELP = ("learned (default): rules for null, empty, unfinished-reasoning, provider-refused and non-English rows, a calibrated "
              "classifier for every other row; pattern: the hand-written rules alone; cascade: learned, then an LLM judge for rows "
              "below --min-confidence; encoder: learned with a fine-tuned encoder (--classifier DIR from frx judge-train --encoder).")


def _load_classifier(path: Optional[Path], mode: str = "learned") -> Any:
    """The weights of the learned step: an ``.npz`` of the fast tier, or (mode encoder) the
    directory of a fine-tuned encoder."""
    if mode == "encoder":
        if path is None:
            raise FrxError("--mode encoder needs --classifier DIR (an encoder judge from frx judge-train --encoder)")
        if not path.is_dir():
            raise FrxError(f"--mode encoder: {path} is not a directory (an encoder judge from frx judge-train --encoder)")
        from .judge_encoder import EncoderJudge

        return EncoderJudge.load(path)
    if path is None:
        return None
    from .classifier import Classifier

    if path.is_dir():
        raise FrxError(f"classifier {path} is a directory: an encoder judge is used with --mode encoder")
    if not path.is_file():
        raise FrxError(f"classifier {path} does not exist")
    return Classifier.load(path)


@app.command()
@user_errors
def judge(
    input: Annotated[Path, typer.Argument(help="Parquet, JSONL or CSV file with model responses.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    response_column: Annotated[str, typer.Option(help="Column holding the responses.")] = "response",
    prompt_column: Annotated[Optional[str], typer.Option(help="Column holding the prompts (features of the learned judge; shown to the LLM judge). Default: 'prompt' if the input has it.")] = None,
    finish_reason_column: Annotated[
        Optional[str], typer.Option(help="Column with the provider's finish/stop reason (content_filter → refusal).")
    ] = None,
    mode: Annotated[str, typer.Option(help=_MODE_HELP)] = "learned",
    classifier: Annotated[Optional[Path], typer.Option(help="Weights for the learned judge (an .npz from `frx judge-train`; default: the shipped ones), or with --mode encoder the directory from `frx judge-train --encoder`.")] = None,
    judge_model: Annotated[Optional[str], typer.Option(help="Model for cascade mode, e.g. smollm2-135m, hf:PATH, vllm:MODEL, openai:MODEL@URL.")] = None,
    min_confidence: Annotated[float, typer.Option(help="Cascade mode: learned decisions below this confidence (the calibrated probability that the label is right) go to the LLM judge.")] = 0.7,
    judge_max_tokens: Annotated[int, typer.Option(help="Cascade mode: most tokens in a judge reply (raise it for a reasoning judge that thinks before its verdict).")] = 96,
    batch_rows: Annotated[int, typer.Option(help="Rows read, judged and written at a time (memory is bounded by this).")] = 131072,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Label each response full_compliance, safe_partial_compliance, direct_refusal or undetermined.

    Keeps every input row and column in order and adds label, label_source (api, pattern, learned or llm), evidence, confidence and rule (the pattern step's rule, a feature of the learned judge). The input is read, judged and written in batches. Null responses are labelled undetermined, never dropped.
    """
    import pyarrow.compute as pc

    from .io import ParquetSink, check_output, iter_batches
    from .judge import LABELS, MODES
    from .judge import judge as run_judge

    check_output(out, overwrite=overwrite, inputs=(input,))
    if mode not in MODES:
        raise FrxError(f"--mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "cascade" and judge_model is None:
        raise FrxError("--mode cascade needs --judge-model")
    if judge_model is not None and mode != "cascade":
        raise FrxError("--judge-model is only used with --mode cascade")
    if judge_max_tokens < 1:
        raise FrxError(f"--judge-max-tokens must be at least 1, got {judge_max_tokens}")
    if batch_rows < 1:
        raise FrxError(f"--batch-rows must be at least 1, got {batch_rows}")
    if not 0.0 <= min_confidence <= 1.0:
        raise FrxError(f"--min-confidence must be in [0, 1], got {min_confidence}")
    clf = _load_classifier(classifier, mode)
    batches = iter_batches(input, batch_rows=batch_rows)
    first = next(batches, None)
    schema = first.schema if first is not None else None
    if schema is None:
        from .io import read_table

        schema = read_table(input).schema
    # Checked on the first batch, so that a binary column can name its first row that is not UTF-8.
    head = pa.Table.from_batches([first]) if first is not None else schema.empty_table()
    _string_column(head, response_column, input)
    if finish_reason_column is not None:
        _string_column(head, finish_reason_column, input)
    if prompt_column is not None:
        _string_column(head, prompt_column, input)
    elif "prompt" in schema.names and mode != "pattern":
        _string_column(head, "prompt", input)
        prompt_column = "prompt"
    model = None
    if judge_model is not None:
        from .llm import load_judge_model

        model = load_judge_model(judge_model, max_new_tokens=judge_max_tokens)
    labels: dict[str, int] = {}
    sources: dict[str, int] = {}
    doubtful = 0
    total = 0

    def chunks():
        if first is not None:
            yield first
            yield from batches

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with ParquetSink(out) as sink, Progress(TextColumn("judging"), BarColumn(), TextColumn("{task.completed:,} rows"),
                                            TimeElapsedColumn(), transient=True, disable=not sys.stderr.isatty()) as bar:
        task = bar.add_task("judge", total=None)
        for batch in chunks():
            table = pa.Table.from_batches([batch])
            verdict = run_judge(table.column(response_column),
                                table.column(finish_reason_column) if finish_reason_column else None,
                                prompts=table.column(prompt_column) if prompt_column else None, mode=mode, classifier=clf,
                                judge_model=model, min_confidence=min_confidence)
            sink.write(put_columns(table, {name: verdict.column(name) for name in verdict.column_names}))
            for col, tally in (("label", labels), ("label_source", sources)):
                for c in verdict.column(col).value_counts().to_pylist():
                    tally[c["values"]] = tally.get(c["values"], 0) + c["counts"]
            doubtful += pc.sum(pc.and_(pc.equal(verdict.column("label_source"), "learned"),
                                       pc.less(verdict.column("confidence"), min_confidence))).as_py() or 0
            total += table.num_rows
            bar.advance(task, table.num_rows)
        sink.close(None if total else _judged_schema(schema))
    _summary(f"frx judge → {out}", [("rows", total)]
             + [(k.replace("_", " "), labels.get(k, 0)) for k in LABELS]
             + [(f"decided by {k}", sources[k]) for k in ("api", "pattern", "learned", "encoder", "llm") if sources.get(k)]
             + ([(f"learned below --min-confidence {min_confidence:g} (cascade: to the LLM judge)", doubtful)]
                if mode == "learned" else []))


def _judged_schema(schema: pa.Schema) -> pa.Schema:
    for name, t in (("label", pa.string()), ("label_source", pa.string()), ("evidence", pa.string()),
                    ("confidence", pa.float64()), ("rule", pa.string())):
        if name in schema.names:
            schema = schema.remove(schema.get_field_index(name))
        schema = schema.append(pa.field(name, t))
    return schema


def _labelled_inputs(inputs: list[Path], label_maps: list[str], groups: list[str], response_column: Optional[str],
                     label_column: Optional[str], prompt_column: Optional[str]) -> pa.Table:
    """The labelled files as one table (``response, prompt, label, source``)."""
    from .labelled import read_labelled

    def per_file(values: list[str], what: str, default: Optional[str]) -> list[Optional[str]]:
        if not values:
            return [default] * len(inputs)
        if len(values) == 1:
            return values * len(inputs)
        if len(values) != len(inputs):
            raise FrxError(f"{what}: give it once (for every file) or once per file ({len(inputs)}), not {len(values)} times")
        return values

    maps = per_file(label_maps, "--label-map", "auto")
    names = per_file(groups, "--group", None)
    return pa.concat_tables([read_labelled(f, m, response_column=response_column, label_column=label_column,
                                           prompt_column=prompt_column, source=g or f.name)
                             for f, m, g in zip(inputs, maps, names)])


_LABEL_MAP_HELP = ("How the file's labels map to frx's classes: auto (default), frx, xstest, tone (chatgpt-refusals tones), or "
                   "VALUE=CLASS,… pairs (CLASS: full, partial, direct, or - to drop). Once for all files, or once per file in order.")


@app.command("judge-train")
@user_errors
def judge_train(
    inputs: Annotated[list[Path], typer.Argument(help="Labelled responses (Parquet, JSONL, JSON or CSV).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output: an .npz file with the classifier weights, or with --encoder a new directory.")],
    label_map: Annotated[list[str], typer.Option("--label-map", metavar="MAP", help=_LABEL_MAP_HELP)] = [],  # noqa: B006
    group: Annotated[list[str], typer.Option("--group", metavar="NAME", help="Group (e.g. model family) of each file, once per file: groups weigh the same in training and are left out in turn to calibrate. Default: each file its own group.")] = [],  # noqa: B006
    response_column: Annotated[Optional[str], typer.Option(help="Column holding the responses (default: response or completion).")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column with the human label (default: label, final_label or tone).")] = None,
    prompt_column: Annotated[Optional[str], typer.Option(help="Column with the prompts (default: prompt, if there is one).")] = None,
    l2: Annotated[float, typer.Option(help="L2 penalty on the hashed n-gram weights.")] = 1e-4,
    steps: Annotated[int, typer.Option(help="Full-batch optimiser steps.")] = 300,
    encoder: Annotated[bool, typer.Option("--encoder", help="Fine-tune a transformer encoder (the encoder tier) instead of the fast tier; on the GPU when there is one.")] = False,
    base: Annotated[str, typer.Option(help="--encoder: the encoder to fine-tune: minilm (offline all-MiniLM-L6-v2) or a local model directory.")] = "minilm",
    epochs: Annotated[int, typer.Option(help="--encoder: passes over the training rows.")] = 2,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")] = False,
) -> None:
    """Train the learned judge on human labels, and calibrate it: the fast tier (hashed n-grams, the pattern step's rule, structure and prompt overlap → 3 classes) or, with --encoder, a fine-tuned encoder.

    Every row the rules do not settle is a training row. The fast tier's temperature (which makes confidence a probability) is fitted on out-of-fold predictions, each group left out in turn; the encoder's on every 8th row, held out of its training. The fast tier is deterministic: the same inputs give a byte-identical file. Use it with `frx judge --classifier FILE` (an encoder: `--mode encoder --classifier DIR`); docs/judge.md gives the command that builds the shipped weights.
    """
    from .io import check_output

    if encoder:
        _train_encoder(inputs, out, label_map, group, response_column, label_column, prompt_column, base, epochs, overwrite)
        return
    from .judge_train import train

    check_output(out, overwrite=overwrite, inputs=tuple(inputs), suffixes=(".npz",))
    if steps < 1 or l2 < 0:
        raise FrxError("--steps must be at least 1 and --l2 non-negative")
    data = _labelled_inputs(inputs, label_map, group, response_column, label_column, prompt_column)
    clf, report = train(data, l2=l2, steps=steps)
    tmp = out.with_name(f".{out.name}.tmp")
    try:
        clf.save(tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    _summary(f"frx judge-train → {out}", [("rows", report["rows"]), ("trained on", report["trained_on"]),
                                          ("left to the rules (null, empty, not English…)", report["left_to_rules"])]
             + [(k.replace("_", " "), v) for k, v in report["class_counts"].items()]
             + [("groups (calibrated leaving each out)", ", ".join(report["folds"])),
                ("temperature", f"{report['temperature']:.3f}"),
                ("out-of-fold 3-way accuracy", f"{report['out_of_fold_accuracy']:.3f}")])


def _train_encoder(inputs: list[Path], out: Path, label_map: list[str], group: list[str], response_column: Optional[str],
                   label_column: Optional[str], prompt_column: Optional[str], base: str, epochs: int, overwrite: bool) -> None:
    """``frx judge-train --encoder``: fine-tune into a temporary directory beside ``out``, then
    rename it, so a crash leaves no half-written model."""
    import shutil

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .io import temp_beside
    from .judge_encoder import train_encoder

    if out.exists() and not overwrite:
        raise FrxError(f"output {out} already exists (use --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise FrxError(f"output {out} is a file: --encoder writes a directory")
    if epochs < 1:
        raise FrxError(f"--epochs must be at least 1, got {epochs}")
    data = _labelled_inputs(inputs, label_map, group, response_column, label_column, prompt_column)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(out, directory=True)
    try:
        with Progress(TextColumn("fine-tuning"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                      transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("train", total=None)
            model, report = train_encoder(data, base=base, epochs=epochs,
                                          progress=lambda done, total: bar.update(task, completed=done, total=total))
        model.save(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _summary(f"frx judge-train --encoder → {out}", [("rows", report["rows"]), ("trained on", report["trained_on"]),
                                                    ("held out to calibrate", report["calibration_rows"]),
                                                    ("left to the rules (null, empty, not English…)", report["left_to_rules"]),
                                                    ("device", report["device"]), ("steps", report["steps"]),
                                                    ("loss, first → last 50 steps", f"{report['loss_first_50']:.3f} → {report['loss_last_50']:.3f}"),
                                                    ("temperature", f"{report['temperature']:.3f}"),
                                                    ("held-out 3-way accuracy", f"{report['calibration_accuracy']:.3f}")])


@app.command("judge-eval")
@user_errors
def judge_eval(
    inputs: Annotated[list[Path], typer.Argument(help="Labelled responses (Parquet, JSONL, JSON or CSV).")],
    label_map: Annotated[list[str], typer.Option("--label-map", metavar="MAP", help=_LABEL_MAP_HELP)] = [],  # noqa: B006
    response_column: Annotated[Optional[str], typer.Option(help="Column holding the responses (default: response or completion).")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column with the human label (default: label, final_label or tone).")] = None,
    prompt_column: Annotated[Optional[str], typer.Option(help="Column with the prompts (default: prompt, if there is one).")] = None,
    mode: Annotated[str, typer.Option(help="Judge mode to score: learned (default), pattern, or encoder (with --classifier DIR).")] = "learned",
    classifier: Annotated[Optional[Path], typer.Option(help="Weights for the learned judge (.npz; default: the shipped ones), or an encoder judge directory with --mode encoder.")] = None,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the full scores (per label, reliability) as JSON here.")] = None,
) -> None:
    """Score the judge against your human labels: binary and 3-way accuracy, macro-F1, per label, calibration (ECE, reliability), with 95% intervals, next to a prefix-list and a substring-list baseline.

    Rows the judge was trained on score higher than new ones: the shipped weights were trained on XSTest and chatgpt-refusals answers.
    """
    import json

    from .judge import judge as run_judge
    from .judge_eval import markdown_table, prefix_baseline, scores, substring_baseline

    if mode not in ("learned", "pattern", "encoder"):
        raise FrxError(f"--mode must be learned, pattern or encoder, got {mode!r}")
    clf = _load_classifier(classifier, mode)
    data = _labelled_inputs(inputs, label_map, [], response_column, label_column, prompt_column)
    rows, full = [], {}
    names = sorted(set(data.column("source").to_pylist()), key=data.column("source").to_pylist().index)
    for name in names + (["all"] if len(names) > 1 else []):
        part = data if name == "all" else data.filter(pa.compute.equal(data.column("source"), name))
        v = run_judge(part.column("response"), prompts=part.column("prompt"), mode=mode, classifier=clf)
        gold, resp = part.column("label").to_pylist(), part.column("response").to_pylist()
        for method, s in ((f"frx {mode}", scores(gold, v.column("label").to_pylist(), v.column("confidence").to_numpy())),
                          ("prefix list", scores(gold, prefix_baseline(resp))),
                          ("substring list", scores(gold, substring_baseline(resp)))):
            rows.append((name, method, s))
            full.setdefault(name, {})[method] = s
    print(markdown_table(rows))
    last = full[names[-1] if len(names) == 1 else "all"][f"frx {mode}"]
    print("\nreliability (frx, " + ("all files" if len(names) > 1 else names[0]) + "): confidence bin → rows, mean confidence, right")
    for b in last["reliability"]:
        print(f"  {b['bin']}: {b['rows']:>6}  {b['mean_confidence']:.3f}  {b['right']:.3f}")
    if json_out is not None:
        json_out.write_text(json.dumps(full, indent=1, default=float) + "\n")
        print(f"wrote {json_out}")


@app.command()
@user_errors
def metrics(
    judged: Annotated[Path, typer.Argument(help="Judged responses (Parquet, JSONL or CSV) with a label column.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    by: Annotated[Optional[str], typer.Option(help="Also break down by this column (e.g. category).")] = None,
    prompt_label_column: Annotated[Optional[str], typer.Option(help="Column saying whether the prompt is benign or toxic (safe/unsafe/harmful also accepted). Default: label_prompt if present, else every prompt counts as benign (the report says so).")] = None,
    model_column: Annotated[Optional[str], typer.Option(help="Column naming the model. Default: model if present, else one model.")] = None,
    label_column: Annotated[str, typer.Option(help="Column with the judge's label.")] = "label",
    response_column: Annotated[Optional[str], typer.Option(help="Column with the responses, for the report's examples. Default: response if present.")] = None,
    prompt_column: Annotated[Optional[str], typer.Option(help="Column with the prompts, for the report's examples. Default: prompt if present.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing report files.")] = False,
) -> None:
    """Compliance rate, useful safety rate (benign and toxic), refusal rate and undetermined counts per model (and category), each with a 95% Wilson interval.

    Writes metrics.parquet, metrics.md, report.html (self-contained) and PNG plots (per-category compliance; over-refusal on benign vs safety on toxic when both exist).
    """
    from .io import read_columns, schema_of
    from .metrics import compute_metrics
    from .report import write_report

    if out.exists() and not out.is_dir():
        raise FrxError(f"output {out} exists and is not a directory")
    if (out / "metrics.parquet").exists() and not overwrite:
        raise FrxError(f"output {out} already holds a report (use --overwrite to replace it)")
    # Only the columns the metrics read (streamed): a judged file's responses are never loaded.
    wanted = [c for c in (label_column, model_column or "model", by, prompt_label_column or "label_prompt", "label_source") if c]
    schema = schema_of(judged)
    for c in (label_column, model_column, by, prompt_label_column):
        pick_column(schema.names, c, None, judged)
    response_col = pick_column(schema.names, response_column, "response", judged)
    prompt_col = pick_column(schema.names, prompt_column, "prompt", judged)
    table = read_columns(judged, wanted)
    m = compute_metrics(table, label_column=label_column, model_column=model_column, by=by, prompt_label_column=prompt_label_column,
                        where=str(judged))
    from .io import iter_batches
    from .report import pick_examples

    sources = table.column("label_source").value_counts().to_pylist() if "label_source" in table.column_names else []
    context = {"input": str(judged), "rows": f"{table.num_rows:,}"}
    if sources:
        context["decided by"] = ", ".join(f"{c['values']} {c['counts']:,}" for c in sources)
    shown = [c for c in dict.fromkeys([prompt_col, response_col, label_column, prompt_label_column or "label_prompt",
                                       model_column or "model", by, "confidence"]) if c and c in schema.names]
    examples = pick_examples((pa.Table.from_batches([b]) for b in iter_batches(judged, batch_rows=8192, columns=shown)),
                             label_column=label_column,
                             prompt_label_column=prompt_label_column or "label_prompt", model_column=model_column or "model", by=by,
                             response_column=response_col or "", prompt_column=prompt_col or "") if response_col and prompt_col else []
    files = write_report(m, out, context=context, examples=examples)
    print((out / "metrics.md").read_text(encoding="utf-8"))
    print("wrote " + ", ".join(str(f) for f in files))


@app.command()
@user_errors
def models() -> None:
    """List the model aliases and the spec forms frx understands."""
    from .llm.models import ALIASES

    for name, doc in ALIASES.items():
        print(f"{name:<16} {doc}")
    print("\nSpecs: hf:<dir> or a local model directory (transformers, CPU/GPU); vllm:<model> (vLLM offline engine, GPU);")
    print("       openai:<model>@<base_url> (any OpenAI-compatible server; key from $OPENAI_API_KEY or the api_key_env option).")


@app.command()
@user_errors
def bench(
    model: Annotated[list[str], typer.Option("--model", "-m", metavar="SPEC", help="Model spec (repeat to compare): smollm2-135m, hf:DIR, vllm:MODEL, openai:MODEL@URL.")],
    prompts: Annotated[Path, typer.Option(help="Prompt set: Parquet, JSONL or CSV (XSTest, CoCoNot, FalseReject format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    prompt_column: Annotated[str, typer.Option(help="Column holding the prompts.")] = "prompt",
    category_column: Annotated[Optional[str], typer.Option(help="Column with the category. Default: category if present.")] = None,
    label_column: Annotated[Optional[str], typer.Option(help="Column saying benign/safe or toxic/unsafe. Default: label if present, else every prompt counts as benign (the report says so).")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N prompts (in file order: a file that lists one kind first gives only that kind; see --sample).")] = None,
    sample: Annotated[Optional[int], typer.Option(help="A random sample of N prompts, stratified by label and category (each keeps its share).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of --sample: the same seed, the same prompts.")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="Most tokens per response.")] = 256,
    system_prompt: Annotated[Optional[str], typer.Option(help="System message before each prompt.")] = None,
    mode: Annotated[str, typer.Option(help="Judge mode: learned (default), pattern or cascade (needs --judge-model).")] = "learned",
    judge_model: Annotated[Optional[str], typer.Option(help="LLM judge for low-confidence rows (with --mode cascade).")] = None,
    judge_max_tokens: Annotated[int, typer.Option(help="Most tokens in a judge reply (raise it for a reasoning judge).")] = 96,
    batch_size: Annotated[Optional[int], typer.Option(help="hf backend: sequences per generate call.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing report in OUT.")] = False,
) -> None:
    """Run models on a prompt set, judge every answer, and report compliance and refusal side by side.

    Writes responses.parquet, judged.parquet, metrics.parquet, metrics.md, report.html and plots to OUT. Responses are cached by content, so a re-run only generates what is missing.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .bench import BenchConfig, run_bench

    if out.exists() and not out.is_dir():
        raise FrxError(f"output {out} exists and is not a directory")
    if (out / "judged.parquet").exists() and not overwrite:
        raise FrxError(f"output {out} already holds a bench run (use --overwrite to replace it)")
    for name, value in (("--max-new-tokens", max_new_tokens), ("--judge-max-tokens", judge_max_tokens)):
        if value < 1:
            raise FrxError(f"{name} must be at least 1, got {value}")
    if mode == "cascade" and judge_model is None:
        raise FrxError("--mode cascade needs --judge-model")
    if judge_model is not None and mode != "cascade":
        raise FrxError("--judge-model is only used with --mode cascade")
    cfg = BenchConfig(models=model, prompts=prompts, out=out, prompt_column=prompt_column, category_column=category_column,
                      label_column=label_column, limit=limit, sample=sample, seed=seed, max_new_tokens=max_new_tokens, system_prompt=system_prompt,
                      mode=mode, judge_model=judge_model, judge_max_tokens=judge_max_tokens, model_options={"batch_size": batch_size} if batch_size else None)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not sys.stderr.isatty()) as bar:
        tasks: dict[str, Any] = {}

        def progress(spec: str, done: int, total: int) -> None:
            if spec not in tasks:
                tasks[spec] = bar.add_task(f"generate {spec}", total=total)
            bar.update(tasks[spec], completed=done)

        summary = run_bench(cfg, progress)
    print((out / "metrics.md").read_text(encoding="utf-8"))
    for spec, st in summary["models"].items():
        labels = ", ".join(f"{k}: {v}" for k, v in sorted(summary["labels"][spec].items()))
        print(f"{spec}: {st['requests']} prompts in {st['seconds']} s ({st['cache_hits']} from cache, {st['errors']} errors); {labels}")
    print("wrote " + ", ".join(summary["files"] + [str(out / "responses.parquet"), str(out / "judged.parquet")]))


@app.command()
@user_errors
def generate(
    config: Annotated[Path, typer.Option("--config", "-c", help="Pipeline config (TOML), e.g. examples/quickstart.toml.")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a config value, e.g. models.generator=vllm:Qwen/Qwen2.5-7B-Instruct. Repeatable.")] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard finished steps in the output directory and start again (cached model calls are still reused).")] = False,
    executor: Annotated[Optional[str], typer.Option(help="local or ray: where the model steps run (overrides [run] executor).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (with --executor ray); default: a local Ray.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars inside the model steps: one log line per shard.")] = False,
) -> None:
    """Make over-refusal training data with the FalseReject method: seeds → entity graph → subgraphs → adversarial generator/discriminator → dedup + diversity → validation by a model pool → orchestrator → structured responses → dataset.

    The model steps (extract_graph, adversarial_generate, validate_pool, orchestrate, respond) are frx batch stages run over shards of their input ([run] shard_rows), locally or on Ray. Every step records rows in/out and drop reasons (funnel.json); finished steps and shards are skipped on a re-run and every model call is cached, so an interrupted run resumes without repeating calls. Writes OUT/dataset (Parquet, FalseReject schema + provenance, dataset card), OUT/graph, OUT/quality.{json,md}.
    """
    from .generate import load_generate_config, run_generate

    overrides = list(set_ or [])
    if executor is not None:
        overrides.append(f'run.executor="{executor}"')
    if address is not None:
        overrides.append(f'run.address="{address}"')
    cfg, base = load_generate_config(config, overrides)
    rep = run_generate(cfg, base, restart=restart, progress=lambda line: print(line, flush=True), quiet=quiet)
    import os

    out = Path(cfg.output.dir) if Path(cfg.output.dir).is_absolute() else (base / cfg.output.dir).resolve()
    shown = Path(os.path.relpath(out)) if not os.path.relpath(out).startswith("..") else out
    n = rep["prompts"]
    na = lambda x: "n/a" if x is None else x  # noqa: E731
    print(f"\n{n} {'prompt' if n == 1 else 'prompts'} → {shown / 'dataset'}; Self-BLEU {na(rep['self_bleu'])}, "
          f"Dist-2 {na(rep['dist_2'])}; report: {shown / 'quality.md'}")
    roles = {cfg.models.extractor, cfg.models.generator, cfg.models.discriminator, cfg.models.orchestrator, cfg.models.responder}
    if n == 0:
        drops = [(f["step"], k, v) for f in rep.get("funnel", []) for k, v in f["dropped"].items() if v]
        print("No prompt passed every check. Drops by step: " + ("; ".join(f"{s}: {k} {v}" for s, k, v in drops) or "none")
              + f". The candidates of each step are in {shown / 'steps'}.")
        _show_candidates(out)
    if roles == {"smollm2-135m"}:
        print("These come from a 135M model, which writes weak prompts and responses: the run shows every step working, "
              "not data to train on. For real data, set capable models, e.g. --set models.generator=vllm:Qwen/Qwen2.5-7B-Instruct "
              "(examples/cluster.toml runs every role on GPUs).")


def _show_candidates(out: Path, k: int = 3) -> None:
    """A few of the generator's distinct candidates and the prompt gate each fails."""
    import pyarrow.parquet as pq

    from .generate import STEPS, prompt_gate_reasons

    path = out / "steps" / f"{STEPS.index('adversarial_generate'):02d}-adversarial_generate.parquet"
    if not path.exists():
        return
    cands = pq.read_table(path, columns=["prompt", "seed_text", "category", "category_text"])
    first = {" ".join((p or "").split()): i for i, p in reversed(list(enumerate(cands.column("prompt").to_pylist())))}
    shown = cands.take(pa.array(sorted(first.values())[:k], pa.int64()))
    if shown.num_rows:
        print("What the generator wrote, and why it was dropped:")
    for text, why in zip(shown.column("prompt").to_pylist(), prompt_gate_reasons(shown)):
        print(f"  - {' '.join((text or '').split())[:120]!r}: {why or 'passed the gates (see the funnel)'}")


@app.command()
@user_errors
def quality(
    dataset: Annotated[Path, typer.Argument(help="A `frx generate` output directory, its dataset/ folder, or a Parquet file with a prompt column.")],
    self_bleu_sample: Annotated[int, typer.Option(help="Score Self-BLEU (O(n²)) on a sample of at most N prompts; 0 = all of them.")] = 300,
    seed: Annotated[int, typer.Option(help="Seed of the Self-BLEU sample.")] = 0,
) -> None:
    """Recompute the quality report of a generated dataset: Self-BLEU, Dist-2, per category, and the funnel when the run directory is given."""
    import json

    from .io import read_table
    from .quality import quality_markdown, quality_report, report_for_run

    if self_bleu_sample < 0:
        raise FrxError(f"--self-bleu-sample must be 0 (all) or more, got {self_bleu_sample}")
    if (dataset / "funnel.json").exists() and (dataset / "dataset").is_dir():
        rep = report_for_run(dataset, max_prompts=self_bleu_sample, seed=seed)
    else:
        if dataset.is_dir():
            files = sorted(dataset.rglob("*.parquet"))
            if not files:
                raise FrxError(f"no Parquet files under {dataset}")
            table = pa.concat_tables([read_table(f) for f in files])
        elif dataset.exists():
            table = read_table(dataset)
        else:
            raise FrxError(f"{dataset} does not exist")
        if "prompt" not in table.column_names:
            raise FrxError(f"{dataset} has no prompt column")
        funnel_file = dataset.parent / "funnel.json" if dataset.is_dir() else None
        funnel = json.loads(funnel_file.read_text())["steps"] if funnel_file and funnel_file.exists() else None
        rep = quality_report(table, funnel, max_prompts=self_bleu_sample, seed=seed)
    print(quality_markdown(rep))


@app.command()
@user_errors
def sft(
    base: Annotated[str, typer.Option(help="Base model: smollm2-135m, hf:DIR or a local model directory.")],
    data: Annotated[list[Path], typer.Option(metavar="PATH", help="FalseReject-schema dataset (Parquet/JSONL, or a folder of Parquet, e.g. OUT/dataset/data from frx generate). Repeatable.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory: checkpoints, adapter, merged model, training card.")],
    format: Annotated[str, typer.Option(help="instruct (train on instruct_response) or cot (<think>reasoning</think> then the solution).")] = "instruct",
    general: Annotated[Optional[Path], typer.Option(help="General instruction data to mix in (prompt + response, or messages).")] = None,
    mix: Annotated[float, typer.Option(help="Share of general rows in the training mix (with --general).")] = 0.5,
    lora_r: Annotated[int, typer.Option(help="LoRA rank; 0 = full fine-tuning.")] = 16,
    epochs: Annotated[float, typer.Option(help="Training epochs (ignored when --max-steps is set).")] = 1.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 2e-4,
    max_steps: Annotated[int, typer.Option(help="Stop after this many optimiser steps (-1: whole epochs).")] = -1,
    max_seq_len: Annotated[int, typer.Option(help="Longest tokenised example; longer ones are truncated.")] = 1024,
    batch_size: Annotated[int, typer.Option(help="Examples per device per step.")] = 4,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps.")] = 1,
    save_steps: Annotated[int, typer.Option(help="Checkpoint every N steps (a re-run resumes from the last).")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed (data order, mix sample, initialisation).")] = 0,
    merge: Annotated[bool, typer.Option("--merge", help="Also write the base model with the adapter merged in (OUT/merged).")] = False,
    eval_prompts: Annotated[Optional[Path], typer.Option(help="Run frx bench on the base and the trained model (the adapter on its base, or OUT/merged with --merge) over these prompts; writes OUT/eval/before_after.md.")] = None,
    eval_limit: Annotated[Optional[int], typer.Option(help="Only the first N eval prompts (in file order).")] = None,
    eval_sample: Annotated[Optional[int], typer.Option(help="A sample of N eval prompts, stratified by label and category (seeded by --seed).")] = None,
    eval_max_new_tokens: Annotated[int, typer.Option(help="Tokens per eval response.")] = 128,
) -> None:
    """Fine-tune against over-refusal with TRL (LoRA by default) on FalseReject-schema data, optionally mixed with general data; then, with --eval-prompts, show before/after with frx bench.

    Only the answer carries loss (conversational prompt/completion rows, the base model's chat template). Checkpoints let an interrupted run resume: run the same command again. OUT gets adapter/ (or model/ for full fine-tuning), merged/ with --merge, training.json and TRAINING.md (data files with hashes, mix, hyperparameters, loss curve) and, last, _SUCCESS.
    """
    from .sft import SftConfig, eval_before_after, run_sft

    if format not in ("instruct", "cot"):
        raise FrxError(f"--format must be instruct or cot, got {format!r}")
    if eval_prompts is not None and not eval_prompts.exists():
        raise FrxError(f"--eval-prompts {eval_prompts} does not exist")
    if eval_limit is not None and eval_sample is not None:
        raise FrxError("--eval-limit and --eval-sample exclude each other")
    for name, value in (("--eval-limit", eval_limit), ("--eval-sample", eval_sample)):
        if value is not None and value < 1:
            raise FrxError(f"{name} must be at least 1, got {value}")
    cfg = SftConfig(base=base, data=list(data), out=out, format=format, general=general, mix=mix, lora_r=lora_r, epochs=epochs, lr=lr,
                    max_steps=max_steps, max_seq_len=max_seq_len, batch_size=batch_size, grad_accum=grad_accum,
                    save_steps=save_steps, seed=seed, merge=merge)
    rec = run_sft(cfg, log=lambda line: print(line, flush=True))
    _summary(f"frx sft → {out}", [("method", rec["method"]), ("rows", rec["data"]["rows"]), ("steps", rec["steps"]),
                                  ("train loss", f"{rec['train_loss']:.4f}"), ("seconds", rec["seconds"])])
    if eval_prompts is not None:
        trained = Path(rec["merged"] or rec["adapter"])
        print(eval_before_after(base, trained, eval_prompts, out / "eval", limit=eval_limit, sample=eval_sample, seed=seed,
                                max_new_tokens=eval_max_new_tokens))


class GraphMode(str, Enum):
    walks = "walks"
    subgraphs = "subgraphs"
    khop = "khop"


@app.command()
@user_errors
def graph(
    edges: Annotated[Path, typer.Argument(help="Edge list: Parquet, JSONL or CSV with integer node ids.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")],
    mode: Annotated[GraphMode, typer.Option(help="walks: random walks; subgraphs: connected k-node sets; khop: fan-out samples.")] = GraphMode.walks,
    src_column: Annotated[str, typer.Option(help="Source node column.")] = "src",
    dst_column: Annotated[str, typer.Option(help="Destination node column.")] = "dst",
    weight_column: Annotated[Optional[str], typer.Option(help="Edge weight column (steps follow weights).")] = None,
    directed: Annotated[bool, typer.Option("--directed", help="Treat edges as directed.")] = False,
    starts: Annotated[int, typer.Option(help="Samples per node: every node is a start this many times.")] = 1,
    length: Annotated[int, typer.Option(help="Steps per walk (walks).")] = 10,
    k: Annotated[int, typer.Option(help="Nodes per subgraph (subgraphs).")] = 3,
    fanouts: Annotated[str, typer.Option(help="Comma-separated fan-out per hop (khop).")] = "5,5",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same samples.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing output file.")] = False,
) -> None:
    """Sample from a graph given as an edge list: walks, connected subgraphs or k-hop edges."""
    from .graph import Graph
    from .io import check_output, read_table, write_parquet

    check_output(out, overwrite=overwrite, inputs=(edges,))
    if starts < 1:
        raise FrxError(f"--starts must be at least 1, got {starts}")
    table = read_table(edges)
    for c in [src_column, dst_column] + ([weight_column] if weight_column else []):
        if c not in table.column_names:
            raise FrxError(f"column {c!r} not found in {edges}; columns are {', '.join(table.column_names)}")
    g = Graph.from_edges(
        table.column(src_column),
        table.column(dst_column),
        None if weight_column is None else table.column(weight_column),
        directed=directed,
    )
    start = np.repeat(np.arange(g.num_nodes, dtype=np.int64), starts)
    if mode is GraphMode.walks:
        w = g.random_walks(start, length, seed)
        result = pa.table({"start": start, "walk": pa.FixedSizeListArray.from_arrays(w.ravel(), length + 1)})
    elif mode is GraphMode.subgraphs:
        s = g.subgraphs(start, k, seed)
        result = pa.table({"start": start, "nodes": pa.FixedSizeListArray.from_arrays(s.ravel(), k)})
    else:
        try:
            fan = [int(x) for x in fanouts.split(",") if x.strip()]
        except ValueError:
            raise FrxError(f"--fanouts must be comma-separated integers, got {fanouts!r}") from None
        result = g.khop(start, fan, seed)
        result = result.set_column(0, "sample", pa.array(start[result.column("sample").to_numpy()]))
        result = result.rename_columns(["start", "hop", "src", "dst", "edge_type"])
    write_parquet(result, out)
    _summary(f"frx graph {mode.value} → {out}", [("nodes", g.num_nodes), ("edges stored", g.num_edges), ("rows written", result.num_rows)])


def _list_stages() -> None:
    from .engine.stages import ENDPOINTS, STAGES

    for name, doc in ENDPOINTS.items():
        print(f"{name}\n    {doc}\n")
    for name in sorted(STAGES):
        cls = STAGES[name]
        flags = " (keeps state across shards)" if cls.stateful else ""
        print(f"{name}{flags}\n    {(cls.__doc__ or '').strip()}")
        for fname, f in cls.Params.model_fields.items():
            default = "required" if f.is_required() else f"default {f.default!r}"
            desc = f" — {f.description}" if f.description else ""
            print(f"    {fname} ({default}){desc}")
        print()


def _print_plan(plan, manifest_done: int) -> None:
    print(f"config hash  {plan.cfg.hash()[:16]}")
    print(f"input        {len(plan.files)} file(s), {plan.rows:,} rows, {len(plan.shards)} shard(s) of up to {plan.cfg.input.shard_rows:,} rows")
    cols = [f"{f.name}:{f.type}" for f in plan.schema]
    print(f"columns      {', '.join(cols)}")
    for k, st in enumerate(plan.stages):
        extra = " [cross-shard state]" if st.stateful else ""
        reads = ", ".join(st.reads()) or "-"
        adds = ", ".join(st.adds()) or "-"
        print(f"stage {k + 1:<6} {st.name} (reads {reads}; adds {adds}){extra}")
    print(f"output       {plan.run_dir}/data/part-NNNNN.parquet ({manifest_done} of {len(plan.shards)} shards already done)")
    print(f"executor     {plan.cfg.run.executor}")


@app.command()
@user_errors
def batch(
    config: Annotated[Optional[Path], typer.Argument(help="Pipeline config (TOML).")] = None,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", metavar="KEY=VALUE", help="Override a config value, e.g. stage.2.threshold=0.8 (stages count from 1). Repeatable.")
    ] = None,
    restart: Annotated[bool, typer.Option("--restart", help="Discard an existing run in the output directory and start again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (files, shards, stages, columns) and stop.")] = False,
    list_stages: Annotated[bool, typer.Option("--list-stages", help="Document every stage and its parameters, and stop.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars: one log line per shard.")] = False,
    executor: Annotated[Optional[str], typer.Option(help="local or ray (overrides [run] executor).")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address (with --executor ray); default: a local Ray.")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for the local executor (overrides [run] workers).")] = None,
) -> None:
    """Run a pipeline of stages over sharded Parquet/JSONL/CSV data: resumable, bounded memory.

    Each shard's result is written atomically and recorded in a manifest tied to the config hash: after a crash, run the same command again and finished shards are skipped. Results go to OUTPUT/data/part-NNNNN.parquet with stats.json (rows in/out, drop reasons, seconds) and _SUCCESS.
    """
    from .config import load_config
    from .engine.run import RunDir, execute, make_plan

    if list_stages:
        _list_stages()
        return
    if config is None:
        raise FrxError("missing CONFIG (a TOML file); see `frx batch --help`")
    overrides = list(set_ or [])
    if executor is not None:
        overrides.append(f'run.executor="{executor}"')
    if address is not None:
        overrides.append(f'run.address="{address}"')
    if workers is not None:
        overrides.append(f"run.workers={workers}")
    cfg, base = load_config(config, overrides)
    plan = make_plan(cfg, base)
    if dry_run:
        m = RunDir(plan.run_dir).load_manifest() if plan.run_dir.exists() else None
        same = m is not None and m.get("config_hash") == cfg.hash()
        _print_plan(plan, len(m["done"]) if same else 0)
        return
    stats = execute(plan, restart=restart, quiet=quiet)
    rows = [("shards", f"{stats['shards_done']}/{stats['shards']} ({stats['shards_computed_this_invocation']} computed now)"),
            ("rows in", stats["rows_in"]), ("rows out", stats["rows_out"])]
    for s in stats["stages"]:
        if s["use"] in ("read", "write") and s["rows_in"] == 0:
            continue
        drops = ", ".join(f"{r}: {n:,}" for r, n in s["dropped"].items() if n) or "no drops"
        rate = f"{s['rows_per_s']:,.0f} rows/s" if s["rows_per_s"] else "-"
        extra = "".join(f"; {k.replace('_', ' ')}: {n:,}" for k, n in s.get("counters", {}).items())
        rows.append((f"{s['stage']}. {s['use']}", f"{s['rows_in']:,} → {s['rows_out']:,} ({drops}; {rate}{extra})"))
    _summary(f"frx batch → {plan.run_dir}", rows)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
