"""Figures as the commands write them: a PNG (matplotlib, written atomically) and the numbers beside it as CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from sngan.utils.outputs import write_atomic, write_text


def save_figure(fig: Any, png: Path) -> Path:
    """``fig`` laid out and written to ``png`` atomically (never a partial file), then closed."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        return write_atomic(png, lambda f: fig.savefig(f, format="png", dpi=100))
    finally:
        plt.close(fig)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` (dicts with the same keys, in that order) as CSV; None as an empty field."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["empty"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return write_text(path, buffer.getvalue())
