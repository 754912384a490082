"""``python -m sngan.paper_figures SWEEP_DIR``: the paper's Figures 1, 2 and 3 from a sweep's run folders.

SWEEP_DIR holds run folders, one per method (``constraint=``) and Table 1 setting (``optim=``), as
``experiment=paper_grid_synthetic``, ``paper_grid_cifar10`` or ``paper_grid_stl10`` write them. Into
SWEEP_DIR/figures/ (or --out) go a PNG and a CSV of its numbers for each figure:

- fig1_inception_score: IS per setting (A-F) per method, the last evaluation of each run;
- fig2_fid: FID per setting per method, on a log axis;
- fig3_singular_values: the squared singular values of each of D's layers, sorted and scaled so that the
  largest is 1, for each method's best run by Figure 1's measure, from its newest checkpoint.

The paper publishes no numbers for the bars of Figures 1 and 2, only each method's optimum in Table 2: that
value is drawn as a marker over the method's best setting here (CIFAR-10 and STL-10 runs of 100K or 200K
updates). Runs without IS and FID (the synthetic dataset, metrics=none) give fig1_quality and fig2_modes
instead: the synthetic quality and modes covered, of the EMA of G where the runs kept one.

    python -m sngan.paper_figures multirun/paper_grid_synthetic
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from sngan.cli.figures import save_figure, write_csv
from sngan.cli.sweep_cells import Cell, Measure, measures, method_of, ordered_series, read_cells, series_label
from sngan.metrics.published import SETTINGS, TABLE2, table1
from sngan.utils.outputs import OutputError, ensure_folder


def published(cell: Cell) -> tuple[str, float, float, float] | None:
    return TABLE2.get((cell.dataset, cell.method, cell.loss == "hinge", cell.train_steps))


def bar_rows(cells: list[Cell], measure: Measure, sweep: Path) -> list[dict[str, Any]]:
    """One row per (method, loss, setting): the mean over its runs (seeds), and the paper's Table 2 value in
    the row of the method's best setting here."""
    rows = []
    for series in ordered_series(cells):
        for setting in [s for s in [*SETTINGS, "other"] if any(c.setting == s for c in cells)]:
            group = [c for c in cells if c.series == series and c.setting == setting]
            values = [v for v in (c.value(measure.key)[0] for c in group) if v is not None]
            stds = [c.value(measure.std_key)[0] for c in group] if measure.std_key else []
            rows.append({
                "method": series[0], "loss": series[1], "setting": setting, "runs": len(group),
                "value": sum(values) / len(values) if values else None,
                "std": stds[0] if len(group) == 1 and stds and stds[0] is not None else None,
                "generator": group[0].value(measure.key)[1] if group else "-",
                "trained_steps": min((int(c.last.get("step", 0)) for c in group), default=None),
                "train_steps": group[0].train_steps if group else None,
                "paper": None, "paper_row": "",
                "folders": ";".join(str(c.run.relative_to(sweep)) for c in group),
            })  # fmt: skip
    for series in ordered_series(cells):
        mine = [r for r in rows if (r["method"], r["loss"]) == series and r["value"] is not None]
        if not mine or measure.paper is None:
            continue
        best = (max if measure.higher_is_better else min)(mine, key=lambda r: r["value"])
        cell = next(c for c in cells if c.series == series and c.setting == best["setting"])
        if published(cell) is not None:
            best["paper"], best["paper_row"] = published(cell)[measure.paper], published(cell)[0]
    return rows


def tick_label(letter: str, settings: dict[str, tuple[float, ...]]) -> str:
    if letter not in settings:
        return "other"
    lr, _, beta1, beta2, n_dis = settings[letter]
    return f"{letter}\nlr {lr:g}\nβ {beta1:g}, {beta2:g}\nn_dis {n_dis}"


def draw_bars(rows: list[dict[str, Any]], measure: Measure, title: str, png: Path) -> None:
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys((r["method"], r["loss"]) for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    width = 0.8 / max(1, len(series))
    colors = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(max(8.0, 1.5 * len(settings) + 3) + 3, 5.5))
    for i, s in enumerate(series):
        mine = {r["setting"]: r for r in rows if (r["method"], r["loss"]) == s}
        xs = [settings.index(k) - 0.4 + width * (i + 0.5) for k in mine]
        ys = [r["value"] if r["value"] is not None else float("nan") for r in mine.values()]
        errs = [r["std"] or 0.0 for r in mine.values()] if measure.std_key else None
        unfinished = [r["trained_steps"] is not None and r["trained_steps"] < r["train_steps"] for r in mine.values()]
        bars = ax.bar(xs, ys, width, yerr=errs, label=series_label(s, series), color=colors(i % 10), capsize=2)
        ax.bar_label(bars, fmt="%.3g", fontsize=6, rotation=90, padding=2)  # a bar of 0 is seen too
        for bar, late in zip(bars, unfinished):
            bar.set_hatch("//" if late else "")
        for x, r in zip(xs, mine.values()):
            if r["paper"] is not None:
                ax.plot(x, r["paper"], marker="D", color="black", markersize=6, linestyle="none")
    if any(r["paper"] is not None for r in rows):
        paper = "paper, Table 2: the method's optimum, drawn at its best setting here"
        ax.plot([], [], marker="D", color="black", linestyle="none", label=paper)
    handles, _ = ax.get_legend_handles_labels()
    if any(r["trained_steps"] is not None and r["trained_steps"] < r["train_steps"] for r in rows):
        from matplotlib.patches import Patch  # an empty bar's legend entry would take the next colour instead

        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="hatched: run not finished"))
    ax.set_xticks(range(len(settings)), [tick_label(k, table1()) for k in settings], fontsize=8)
    ax.set_xlabel("optimizer setting (Table 1)")
    ax.set_ylabel(measure.label)
    log = measure.log and any(r["value"] is not None and r["value"] > 0 for r in rows)
    ax.set_yscale("log" if log else "linear")
    if log:  # plain numbers on the log axis (30, 40, 60), not 3 x 10^1
        from matplotlib.ticker import FuncFormatter

        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:g}"))
    else:
        ax.set_ylim(0, measure.top)
    ax.set_title(title, fontsize=11)
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside, never over
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, png)


def layer_spectra(state: dict[str, Any]) -> list[tuple[str, torch.Tensor]]:
    """Each layer of the checkpoint's D with a weight: its squared singular values, sorted, largest 1. The weight
    is the one the layer multiplies by (normalized under SN, WN ...): D rebuilt, loaded and read in eval mode
    (SN then reads its stored u, v and advances nothing). Convolutions are reshaped d_out x (d_in h w)."""
    from torch import nn

    from sngan.models import build_models

    m = state["config"]["model"]
    classes = len(state.get("classes") or [])
    _, d = build_models(m["name"], m["z_dim"], m["width"], None, classes, constraint=method_of(state["config"]))
    d.load_state_dict(state["discriminator"])
    d.eval()
    spectra = []
    with torch.no_grad():
        for name, module in d.named_modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and min(module.weight.shape[:2]) > 1:  # not D's last
                w = module.weight.detach().double().reshape(module.weight.shape[0], -1)
                s2 = torch.linalg.svdvals(w) ** 2
                spectra.append((name, s2 / s2.max()))
    return spectra


def figure3(cells: list[Cell], measure: Measure, title: str, png: Path, csv_path: Path) -> bool:
    """Figure 3 from each method's best run (``measure``); False where no run has a checkpoint."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    from sngan.utils import checkpoint as ckpt

    chosen = []
    for series in ordered_series(cells):
        runs = [c for c in cells if c.series == series and ckpt.list_checkpoints(c.run)]
        scored = [c for c in runs if c.value(measure.key)[0] is not None] or runs
        if scored:
            pick = (max if measure.higher_is_better else min)(scored, key=lambda c: c.value(measure.key)[0] or 0.0)
            newest = ckpt.list_checkpoints(pick.run)[-1]
            try:
                chosen.append((series, pick, newest, layer_spectra(ckpt.load(newest))))
            except (ckpt.CheckpointError, RuntimeError, KeyError) as exc:  # damaged, or from another version
                why = str(exc).strip().splitlines()[0]
                print(f"warning: Figure 3 leaves out {series[0]}: D of {newest} cannot be read back ({why}).",
                      file=sys.stderr)  # fmt: skip
    if not chosen:
        return False
    layers = [name for name, _ in chosen[0][3]]
    cols = min(4, len(layers))
    rows_ = -(-len(layers) // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(4 * cols, 3.2 * rows_), squeeze=False)
    names = [s for s, *_ in chosen]
    table = []
    for i, (series, cell, newest, spectra) in enumerate(chosen):
        for k, (ax, (layer, s2)) in enumerate(zip(axes.flat, spectra)):  # layers in order (names differ: BN's)
            ax.plot(range(len(s2)), s2.tolist(), label=series_label(series, names), color=plt.get_cmap("tab10")(i % 10))
            ax.set_title(f"layer {k + 1} ({len(s2)} singular values)", fontsize=9)
            ax.set_ylim(0, 1.05)
            ax.set_xlabel("index of singular value")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel("σ² / max σ²")
            table += [{"method": series[0], "loss": series[1], "setting": cell.setting, "run": str(cell.run),
                       "checkpoint": newest.name, "layer": k + 1, "module": layer, "index": j,
                       "squared_singular_value_scaled": float(v)} for j, v in enumerate(s2)]  # fmt: skip
    for ax in list(axes.flat)[len(layers) :]:
        ax.axis("off")
    spare = list(axes.flat)[len(layers) :]  # the legend in an empty panel, else beside the panels
    handles, labels = axes.flat[0].get_legend_handles_labels()
    (spare[0] if spare else fig).legend(handles, labels, fontsize=9, loc="center" if spare else "center right")
    fig.suptitle(title, fontsize=11)
    save_figure(fig, png)
    write_csv(csv_path, table)
    return True


def write_figures(sweep: Path, out: Path | None = None) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    cells = read_cells(sweep)
    out = ensure_folder(out or Path(sweep) / "figures", "--out FOLDER")
    rules = sorted({c.rule for c in cells if c.rule is not None})
    first, second = measures(rules[0] if rules else None)
    where = ", ".join(sorted({c.dataset for c in cells}))
    steps = ", ".join(f"{s:,}" for s in sorted({c.train_steps for c in cells}))
    written = []
    for number, measure in ((1, first), (2, second)):
        rows = bar_rows(cells, measure, Path(sweep))
        if all(r["value"] is None for r in rows):
            print(f"warning: no run in '{sweep}' logged {measure.key}: Figure {number} has no bars.", file=sys.stderr)
        title = f"Figure {number}: {measure.label.split(' (')[0]} per method and setting, {where}, {steps} G updates"
        draw_bars(rows, measure, title, out / f"{measure.name}.png")
        write_csv(out / f"{measure.name}.csv", rows)
        written += [out / f"{measure.name}.png", out / f"{measure.name}.csv"]
    title = f"Figure 3: squared singular values of D's layers, each method's best run ({first.label.split(' (')[0]})"
    if figure3(cells, first, title, out / "fig3_singular_values.png", out / "fig3_singular_values.csv"):
        written += [out / "fig3_singular_values.png", out / "fig3_singular_values.csv"]
    else:
        print(f"note: no run in '{sweep}' has a checkpoint: Figure 3 was not drawn.", file=sys.stderr)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sngan.paper_figures", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a sweep's folder, e.g. multirun/paper_grid_synthetic")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: SWEEP_DIR/figures)")
    args = parser.parse_args(argv)
    try:
        written = write_figures(args.sweep_dir, args.out)
    except (OSError, OutputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print("Wrote " + ", ".join(str(p) for p in written) + ".", file=sys.stderr)


if __name__ == "__main__":
    main()
