"""``python -m sngan.evaluate images=...``: any images (a folder, a .npz) scored under a rule against a dataset's
reference statistics, the protocol a checkpoint is scored by."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from sngan.cli.command_settings import EvaluateConfig
from sngan.cli.errors import ensure_folder
from sngan.cli.provenance import resolve_device
from sngan.cli.tables import check_protocol, existing_table, format_values, merged, rows_report, write_json
from sngan.config import MetricsConfig
from sngan.data.image_sets import ImageSet, load_image_set
from sngan.metrics.reference import MetricsError
from sngan.metrics.scoring import make_scorer
from sngan.training.stopping import report_stops_with
from sngan.utils.memory import out_of_memory


def evaluate_images(cfg: EvaluateConfig) -> tuple[dict[str, Any], Path]:
    """Score the images of a folder or a .npz (``cfg.images``) under the rule, against the dataset's
    reference statistics (or ``metrics.stats``): the protocol a checkpoint is scored by, for any images."""
    assert cfg.images is not None
    device = resolve_device(cfg.device)
    source = Path(cfg.images).resolve()
    rule = cfg.metrics.name
    out = (
        Path(cfg.out)
        if cfg.out
        else source.with_name(f"{source.stem if source.is_file() else source.name}.{rule}.json")
    )
    old = existing_table(out, rule, cfg.overwrite)  # before the images are read: a file not ours to replace
    written = [0]
    report_stops_with(lambda: rows_report(out, written[0], len(old["results"]) if old else 0))
    dataset = cfg.dataset.name if cfg.dataset is not None else None
    resolution = cfg.dataset.resolution if cfg.dataset is not None else None
    wanted = cfg.metrics  # FID etc. take the first n_fake images, IS the first is_images
    found = load_image_set(cfg.images, resolution, dataset, limit=wanted.n_generated)
    ensure_folder(out.parent)  # before the slow part (after the images: a mistyped path creates no folder)
    check_count(found, cfg.images, wanted)
    fix = (
        f"Embed fewer images at once (batch_size={cfg.batch_size}, e.g. half), or score on another device (device=cpu)"
    )
    with out_of_memory(f"scoring on {device}", fix, device, "Nothing was written."):
        scorer = make_scorer(cfg.metrics, cfg.inception, cfg.dataset, device)
        assert scorer is not None
        scorer = dataclasses.replace(scorer, batch_size=cfg.batch_size)  # images an Inception pass; same numbers
        check_protocol(out, old, {**scorer.describe(), "seed": None, "intra_class": None})  # before the embedding
        row = {"images": str(source), "count": found.total, "network": "-"}
        row |= scorer.images(found.images) | {"sizes": found.sizes, "resized": found.resized}
    results, _ = merged(old, [row], [])
    doc = {**scorer.describe(), "sizes": found.sizes, "resized": found.resized, "results": results}  # sizes: the newest
    write_json(out, doc)
    written[0] = 1
    print(f"{source.name}: {rule}: {format_values(row)}", file=sys.stderr)
    return doc, out


def check_count(found: ImageSet, images: str, wanted: MetricsConfig) -> None:
    """Says what is resized and what is left out; refuses fewer images than the rule's FID scores (fewer than
    its IS splits hold: the scorer leaves IS out and says so)."""
    rule, n_fake = wanted.name, wanted.n_fake
    if found.resized:
        print(f"note: resized as the reals are read: {found.resized} ({describe_sizes(found.sizes)}).", file=sys.stderr)
    if found.total < n_fake:
        raise MetricsError(
            f"images={images} holds {found.total:,} images but rule {rule} scores {n_fake:,}. Give "
            f"at least {n_fake:,}, or a rule with fewer under a name of its own (e.g. "
            f"metrics.name={rule}_{found.total} metrics.n_fake={found.total}), so that its numbers are never "
            f"compared with {rule}'s."
        )
    used = max(n_fake, wanted.is_images) if found.total >= wanted.is_images else n_fake
    if found.total > used:
        print(f"note: scoring the first {used:,} of {found.total:,} images (rule {rule}: FID etc. of the first "
              f"{n_fake:,}, IS over {wanted.is_protocol()}).", file=sys.stderr)  # fmt: skip


def describe_sizes(sizes: dict[str, int]) -> str:
    return ", ".join(f"{n:,} of {size}" for size, n in sizes.items())
