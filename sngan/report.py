"""``python -m sngan.report RUN_DIR``: one picture of a run, read back from its files.

Given a multirun folder instead (``multirun/<name>/<date>``, e.g. from
``experiment=ablation_sn``), it writes a table of its runs (ablation.md/.json).

Writes ``RUN_DIR/report/report.png`` (a titled panel per group of logged
scalars: losses, D outputs, learning rate, gradient norms, spectral norms per
layer, Lipschitz estimate, FID/IS/KID, synthetic quality ..., and the latest
sample grid), ``report.html`` embedding it, and ``report.json`` holding every
plotted series exactly as the event files hold them.

    python -m sngan.report outputs/quickstart/2026-11-28_10-00-00
"""

from __future__ import annotations

import argparse
import contextlib
import html
import json
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from sngan.utils.outputs import OutputError, ensure_folder, output_error, write_atomic, write_text

# (panel title, pattern on the scalar tag); the first match wins, the rest goes to "other"
PANELS = [
    ("losses", r"^loss/"),
    ("mean D output on real and fake", r"^d_out/"),
    ("learning rate", r"^lr/"),
    ("gradient norms", r"^grad_norm/"),
    ("spectral norm of each layer (exact, reshaped weight)", r"^sigma/.*/exact$"),
    ("spectral norm of each normalized layer (exact)", r"^sigma/.*/normalized$"),
    ("power-iteration estimate (what SN divides by)", r"^sigma/.*/estimate$"),
    ("relative gap estimate vs exact", r"^sigma/.*/gap$"),
    ("operator norm of each normalized convolution", r"^sigma/.*/operator$"),
    ("Lipschitz estimate of D (product of layer norms)", r"^lipschitz/"),
    ("FID", r"/fid$"),
    ("Inception Score", r"/is_(mean|std)$"),
    ("KID", r"/kid_(mean|std)$"),
    ("precision and recall (k=3), density and coverage (k=5)", r"/(precision|recall|density|coverage)$"),
    ("synthetic data: quality and mode coverage", r"synthetic/(quality|mode_coverage)$"),
    ("synthetic data: other measures", r"synthetic/"),
    ("skipped non-finite updates", r"^nonfinite/"),
    ("speed", r"^speed/"),
]


def read_scalars(run_dir: Path) -> dict[str, dict[str, list[float]]]:
    """Every scalar series of the run's TensorBoard events: {tag: {"steps": [...], "values": [...]}}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    series = {}
    for tag in sorted(acc.Tags()["scalars"]):
        events = acc.Scalars(tag)
        series[tag] = {"steps": [e.step for e in events], "values": [e.value for e in events]}
    return series


def group(series: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, list[float]]]]:
    panels: dict[str, dict[str, dict[str, list[float]]]] = {}
    for tag, data in series.items():
        title = next((t for t, pattern in PANELS if re.search(pattern, tag)), "other")
        panels.setdefault(title, {})[tag] = data
    order = [t for t, _ in PANELS] + ["other"]
    return {t: panels[t] for t in order if t in panels}


def latest_grid(run_dir: Path) -> Path | None:
    grids = sorted((run_dir / "samples").glob("step_*.png"))
    return grids[-1] if grids else None


# How the report picks another place when the run folder cannot be written (a read-only archive, say).
OUT_OPTION = "--out FOLDER; the run folder itself is only read"


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A failed write (disk full, folder read-only) as one paragraph naming --out, not a bare errno."""
    try:
        yield
    except OSError as exc:
        raise OutputError(output_error(exc.filename or path, exc, OUT_OPTION)) from exc


def write_report(run_dir: Path, out_dir: Path | None = None) -> dict[str, Path]:
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise FileNotFoundError(
            f"'{run_dir}' does not exist: pass a run folder written by python -m sngan.train "
            f"(outputs/<run_name>/<date>), or a multirun folder (multirun/<run_name>/<date>)."
        )
    if not (run_dir / "tb").is_dir():
        raise FileNotFoundError(
            f"'{run_dir}' holds no tb/ folder of TensorBoard events: pass a run folder written by "
            f"python -m sngan.train."
        )
    out_dir = ensure_folder(Path(out_dir) if out_dir else run_dir / "report", OUT_OPTION)  # before reading
    panels = group(read_scalars(run_dir))
    png, doc, page = out_dir / "report.png", out_dir / "report.json", out_dir / "report.html"
    items = "".join(f"<li>{html.escape(t)}: {', '.join(map(html.escape, tags))}</li>" for t, tags in panels.items())
    with _writing(out_dir):
        plot(run_dir, panels, latest_grid(run_dir), png)
        write_text(doc, json.dumps({"run": str(run_dir), "panels": panels}, indent=1) + "\n")
        write_text(
            page,
            f"<!doctype html><meta charset='utf-8'><title>sngan report: {html.escape(str(run_dir))}</title>"
            f"<h1>{html.escape(str(run_dir))}</h1><img src='report.png' style='max-width:100%'>"
            f"<h2>Panels</h2><ul>{items}</ul><p>Series: <a href='report.json'>report.json</a></p>\n",
        )
    return {"png": png, "html": page, "json": doc}


def plot(run_dir: Path, panels: dict[str, dict[str, dict[str, list[float]]]], grid: Path | None, png: Path) -> None:
    """A titled panel per group of series, and the latest sample grid, saved as ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    title = f"sngan run {run_dir}"
    texts = {  # where each text appears, for the note on characters no font draws
        "the title (the run folder's path)": title,
        "the legends (the scalars' tags)": " ".join(tag for tags in panels.values() for tag in tags),
        "the sample grid's title": grid.stem if grid else "",
    }
    families = fonts_for(texts)
    with matplotlib.rc_context({"font.family": families}), warnings.catch_warnings():
        # a glyph no font has is said once, by fonts_for, not as one raw UserWarning per character
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        draw(title, panels, grid, png)


def fonts_for(texts: dict[str, str]) -> list[str]:
    """The font families to draw ``texts`` with: matplotlib's default, then any installed font that has
    characters it lacks (a CJK run folder's name, say). Characters none has are named in one note line."""
    from matplotlib import font_manager

    default = font_manager.findfont(font_manager.FontProperties())
    families = [font_manager.FontProperties(fname=default).get_name()]
    missing = {c for text in texts.values() for c in text if not c.isspace()} - set(map(chr, _charmap(default)))
    for font in font_manager.fontManager.ttflist if missing else ():
        if font.name.startswith("Last Resort"):  # matplotlib's own fallback: a box for every character
            continue
        has = missing & set(map(chr, _charmap(font.fname)))
        families += [font.name] if has and font.name not in families else []
        missing -= has
    if missing:
        chars = [c for c in dict.fromkeys("".join(texts.values())) if c in missing]  # in the order they appear
        where = ", ".join(place for place, text in texts.items() if set(text) & missing)
        print(
            f"note: no installed font has {''.join(chars)} ({', '.join(f'U+{ord(c):04X}' for c in chars)}), in "
            f"{where}: report.png shows boxes there (report.html and report.json have the text); install a font "
            f"that has them (e.g. Noto Sans CJK) to draw them.",
            file=sys.stderr,
        )
    return families


def _charmap(path: str) -> dict[int, int]:
    from matplotlib.ft2font import FT2Font

    try:
        return FT2Font(path).get_charmap()
    except (OSError, RuntimeError):  # a font file matplotlib listed but cannot read
        return {}


def draw(title: str, panels: dict[str, dict[str, dict[str, list[float]]]], grid: Path | None, png: Path) -> None:
    import matplotlib.pyplot as plt

    count = len(panels) + (grid is not None)
    cols = 3
    rows = max(1, -(-count // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (name, tags) in zip(flat, panels.items()):
        for tag, data in tags.items():
            ax.plot(data["steps"], data["values"], label=tag, linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("generator step")
        if len(tags) <= 12:
            ax.legend(fontsize=6)
    if grid is not None:
        ax = flat[len(panels)]
        ax.imshow(plt.imread(grid))
        ax.set_title(f"latest samples ({grid.stem})", fontsize=10)
        ax.axis("off")
    for ax in flat[count:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    try:
        write_atomic(png, lambda f: fig.savefig(f, format="png", dpi=80))
    finally:
        plt.close(fig)


def sweep_table(sweep_dir: Path, out_dir: Path | None = None) -> tuple[list[dict], Path, Path]:
    """One row per run of a multirun folder (e.g. experiment=ablation_sn): its overrides, final and best
    synthetic quality, modes covered, whether it diverged (it stopped before its last step, or its
    final quality fell below half its best), and recall and coverage where a metric rule was on. Writes
    ablation.md and ablation.json in ``out_dir`` (default: ``sweep_dir``)."""
    import yaml

    out_dir = ensure_folder(Path(out_dir) if out_dir else Path(sweep_dir), OUT_OPTION)  # before reading
    rows = []
    for job in sorted((p for p in Path(sweep_dir).iterdir() if (p / "metrics.jsonl").is_file()), key=lambda p: p.name):
        overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) if (job / ".hydra").is_dir() else []
        lines = [json.loads(line) for line in (job / "metrics.jsonl").read_text().splitlines() if line.strip()]
        steps = int(yaml.safe_load((job / "config.yaml").read_text())["train"]["steps"])
        quality = [line.get("synthetic/quality", 0.0) for line in lines]
        final = lines[-1] if lines else {}
        stopped_early = not lines or final["step"] < steps
        best = max(quality, default=0.0)
        rows.append({
            "run": job.name,
            "overrides": " ".join(o for o in overrides if not o.startswith("experiment=")),
            "final_step": final.get("step", 0),
            "quality": final.get("synthetic/quality", 0.0),
            "modes_covered": int(final.get("synthetic/modes_covered", 0)),
            "best_quality": best,
            "diverged": stopped_early or final.get("synthetic/quality", 0.0) < 0.5 * best,
        } | diversity(final))  # fmt: skip
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # show what differs between the runs
        r["overrides"] = " ".join(o for o in r["overrides"].split() if o not in common)
    rules = sorted({r["rule"] for r in rows if "rule" in r})
    extra = [(f"{key} ({rule})", key, rule) for rule in rules for key in ("recall", "coverage")]
    head = "| run | overrides | final step | quality | modes covered | best quality | diverged |"
    head += "".join(f" {title} |" for title, _, _ in extra) + "\n|" + "---|" * (7 + len(extra)) + "\n"
    body = "".join(
        f"| {r['run']} | {r['overrides']} | {r['final_step']} | {r['quality']:.3f} | {r['modes_covered']} | "
        f"{r['best_quality']:.3f} | {'yes' if r['diverged'] else 'no'} |"
        + "".join(f" {r[key]:.3f} |" if r.get("rule") == rule else " - |" for _, key, rule in extra)
        + "\n"
        for r in rows
    )
    md, js = out_dir / "ablation.md", out_dir / "ablation.json"
    with _writing(out_dir):
        write_text(md, head + body)
        write_text(js, json.dumps(rows, indent=1) + "\n")
    return rows, md, js


def diversity(final: dict) -> dict:
    """Recall and coverage of G at a run's last evaluation, where a metric rule was on (they fall when G
    drops modes, as the synthetic mode count does): {"rule", "recall", "coverage"}, or {}."""
    rules = sorted(k.removesuffix("/recall") for k in final if k.endswith("/recall") and not k.startswith("ema/"))
    if not rules or f"{rules[0]}/coverage" not in final:
        return {}
    return {"rule": rules[0], "recall": final[f"{rules[0]}/recall"], "coverage": final[f"{rules[0]}/coverage"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sngan.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder written by python -m sngan.train")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: RUN_DIR/report; for a multirun: RUN_DIR)"
    )
    args = parser.parse_args(argv)
    try:
        if not (args.run_dir / "tb").is_dir() and args.run_dir.is_dir() and any(args.run_dir.glob("*/metrics.jsonl")):
            rows, md, _ = sweep_table(args.run_dir, args.out)
            print(md.read_text())
            print(f"Wrote {md} ({len(rows)} runs) and its JSON.", file=sys.stderr)
            return
        paths = write_report(args.run_dir, args.out)
    except (OSError, OutputError) as exc:  # a missing run folder says so itself; writes name --out
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"Wrote {paths['png']}, {paths['html']} and {paths['json']}.", file=sys.stderr)


if __name__ == "__main__":
    main()
