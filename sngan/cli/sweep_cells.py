"""A sweep's run folders read back (``read_cells``): what each trained (method, loss, Table 1 setting,
dataset, length) and its last evaluation, and what a bar figure plots of them (``Measure``)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sngan.metrics.published import METHODS, setting_of, table1


@dataclass(frozen=True)
class Measure:
    """What a bar figure plots: ``key`` of metrics.jsonl (``{rule}`` filled in, ``ema/`` added where kept)."""

    name: str  # the files' stem
    key: str
    label: str
    higher_is_better: bool
    log: bool = False
    std_key: str | None = None
    paper: int | None = None  # index of the published value in a TABLE2 row
    top: float | None = None  # the axis' end where the measure has one (a fraction: 1)


def measures(rule: str | None) -> tuple[Measure, Measure]:
    if rule is None:  # no metric rule: the synthetic dataset's own measures
        return (Measure("fig1_quality", "synthetic/quality", "synthetic quality (fraction of good samples)", True,
                        top=1.05),
                Measure("fig2_modes", "synthetic/modes_covered", "modes covered", True))  # fmt: skip
    score = Measure("fig1_inception_score", f"{rule}/is_mean", f"Inception score ({rule})", True)
    fid = Measure("fig2_fid", f"{rule}/fid", f"FID ({rule}, log scale)", False, log=True, paper=3)
    return replace(score, std_key=f"{rule}/is_std", paper=1), fid


@dataclass
class Cell:
    """One run folder of the sweep, read back: what it trained and its last evaluation."""

    run: Path
    method: str
    loss: str
    setting: str  # A-F, or "other" (values of no Table 1 row)
    dataset: str
    train_steps: int
    rule: str | None
    last: dict[str, float] = field(default_factory=dict)

    def value(self, key: str) -> tuple[float | None, str]:
        """The last evaluation's ``key`` of the EMA of G where the run kept one, else of G; and which."""
        for prefix, who in (("ema/", "EMA of G"), ("", "G")):
            if prefix + key in self.last:
                return float(self.last[prefix + key]), who
        return None, "-"

    @property
    def series(self) -> tuple[str, str]:
        return self.method, self.loss


def method_of(config: dict[str, Any]) -> str:
    """The run's constraint option (runs from before the constraint group: sn or none, by model.spectral_norm)."""
    from sngan.training.resume import stored_constraint

    return stored_constraint(config)


def read_cells(sweep: Path) -> list[Cell]:
    import yaml

    if not Path(sweep).is_dir():
        raise FileNotFoundError(f"'{sweep}' is not a folder: pass a sweep's folder (multirun/paper_grid_synthetic).")
    runs = sorted(p.parent for p in Path(sweep).rglob("metrics.jsonl") if (p.parent / "config.yaml").is_file())
    if not runs:
        raise FileNotFoundError(
            f"'{sweep}' holds no run folders (config.yaml and metrics.jsonl): pass the folder of a sweep such as "
            f"python -m sngan.train experiment=paper_grid_synthetic writes (multirun/paper_grid_synthetic)."
        )
    settings, cells = table1(), []
    for run in runs:
        config = yaml.safe_load((run / "config.yaml").read_text())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        rule = config.get("metrics", {}).get("name")
        cells.append(Cell(run, method_of(config), config["loss"]["name"], setting_of(config, settings),
                          config["dataset"]["name"], int(config["train"]["steps"]), None if rule == "none" else rule,
                          rows[-1] if rows else {}))  # fmt: skip
    return cells


def ordered_series(cells: list[Cell]) -> list[tuple[str, str]]:
    order = list(METHODS)
    found = {c.series for c in cells}
    return sorted(found, key=lambda s: (order.index(s[0]) if s[0] in order else len(order), s[0], s[1]))


def series_label(series: tuple[str, str], all_series: list[tuple[str, str]]) -> str:
    method, loss = series
    label = METHODS.get(method, method)
    return f"{label} ({loss})" if sum(m == method for m, _ in all_series) > 1 else label
