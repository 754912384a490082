"""``evaluate``'s JSON table as an output: what a file already at ``out=`` holds, whether new rows may join
it, and the rows merged. A table is added to only under the same rule, protocol and seed (else its rows
would not compare); anything else there is refused before slow work, unless overwrite=true.

Imports nothing from sngan but ``outputs``, so that the refusals are checked before Inception is loaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sngan.utils.outputs import OutputError, write_text

Doc = dict[str, Any]


def existing_table(out: Path, rule: str, overwrite: bool) -> Doc | None:
    """The evaluate table already at ``out`` that the new rows join (None: no file, or overwrite=true).
    A folder there, another rule's table or any other file is refused (``OutputError``): the cheap check,
    made before Inception is loaded; the protocol is checked once the scorer exists (``check_protocol``)."""
    if out.is_dir():
        raise OutputError(
            f"out={out} is a folder; evaluate writes one JSON file. Give a file path (e.g. "
            f"out={out / f'eval_{rule}.json'}); nothing was written."
        )
    if overwrite or not out.exists():
        return None
    doc = read_table(out)
    if doc is None:
        refuse(out, f"holds {what_is(out)}, not an evaluate table, and would be replaced")
    elif doc["rule"] != rule:
        refuse(out, f"holds an evaluate table of rule {doc['rule']}, whose rows those of rule {rule} would not "
                    f"compare with")  # fmt: skip
    return doc


def read_table(path: Path) -> Doc | None:
    """The evaluate table in ``path``, or None where it holds something else (without reading a large
    non-JSON file, e.g. a checkpoint, whole)."""
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"{":
                return None
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc.get("rule"), str) and isinstance(doc.get("results"), list) else None


def what_is(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(2)
    kind = "a zip archive (a PyTorch checkpoint?)" if head == b"PK" else "a file"
    return f"{kind} of {size:,} bytes"


def check_protocol(out: Path, old: Doc | None, new: Doc) -> None:
    """The new rows may join ``old`` only where every key of the protocol (``new``: the scorer's describe(),
    the seed, intra_class) is the same; called as soon as the scorer exists, before an image is generated."""
    if old is None:
        return
    differ = [key for key in new if old.get(key) != new[key]]
    if differ:
        said = "; ".join(f"{key} {old.get(key)!r} there, {new[key]!r} now" for key in differ)
        refuse(out, f"holds an evaluate table of rule {new['rule']} made under another protocol ({said}), whose "
                    f"rows the new ones would not compare with")  # fmt: skip


def refuse(out: Path, holds: str) -> None:
    raise OutputError(
        f"out={out} {holds}. Choose another out=, or add overwrite=true to replace the file; nothing was written."
    )


def same_file(path: str | None) -> str | None:
    """A path as the file it names (absolute, links followed): ``ckpt.pt``, ``./ckpt.pt`` and its absolute
    path given from the same folder are one row. A row written from another folder keeps its relative path."""
    return None if path is None else os.path.realpath(path)


def row_key(row: Doc) -> tuple[Any, ...]:
    """What a row scores: a checkpoint's network at its step, or a set of images (each named by its file)."""
    if "images" in row:
        return (same_file(row["images"]),)
    return (same_file(row.get("checkpoint")), row.get("step"), row.get("network"))


def merged(old: Doc | None, rows: list[Doc], skipped: list[str]) -> tuple[list[Doc], list[str]]:
    """``old``'s rows with the new ones (a row scored again replaces its old one in place, the others are
    appended), and the files left out of the table by either call (and not scored since)."""
    if old is None:
        return list(rows), list(skipped)
    new = {row_key(row): row for row in rows}
    kept = [new.pop(row_key(row), row) for row in old["results"]]
    scored = {same_file(row.get("checkpoint")) for row in rows}
    left_out = [path for path in dict.fromkeys(old.get("skipped", []) + skipped) if same_file(path) not in scored]
    return kept + list(new.values()), left_out


def rows_report(out: Path, written: int, held: int) -> str:
    """What a stop leaves in ``out``: the ``written`` rows scored so far (each written whole as it came) and
    the ``held`` rows it had before."""
    if not written:
        return f"nothing was written ({out} is as it was)" if held else "nothing was written"
    rows = f"the {written} row{'s' if written > 1 else ''} scored so far {'are' if written > 1 else 'is'} in {out}"
    return rows + (f" (with the {held} it held before)" if held else "") + " (complete JSON)"


def write_json(out: Path, doc: dict[str, Any]) -> None:
    """``doc`` written to ``out`` atomically (a temporary file renamed over it); an error names ``out``."""
    write_text(out, json.dumps(doc, indent=2) + "\n")


def write_results(out: Path, head: Doc, rows: list[Doc], skipped: list[str], old: Doc | None) -> Doc:
    """The JSON document of the rows scored so far (joined to the table ``old`` that ``out`` held), written
    after each one (atomically), so that an evaluation stopped after hours keeps what it measured."""
    results, left_out = merged(old, rows, skipped)
    doc = head | {"results": results} | ({"skipped": left_out} if left_out else {})
    write_json(out, doc)
    return doc


KEYS = ("fid", "is_mean", "is_std", "kid_mean", "kid_std", "precision", "recall", "density", "coverage", "intra_fid")


def format_values(row: dict[str, Any]) -> str:
    """The row's numbers: the built-in measures' in their order, then those of measures of one's own."""
    own = [k for k, v in row.items() if k not in KEYS and "/" not in k and isinstance(v, float)]
    return "  ".join(f"{k}={row[k]:.4f}" for k in [*(k for k in KEYS if k in row), *own])


def format_row(rule: str, row: dict[str, Any]) -> str:
    return f"{Path(row['checkpoint']).name:>22} step {row['step']:>8} {row['network']:>3}  {rule}: {format_values(row)}"
