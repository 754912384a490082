"""``python -m sngan.evaluate``: FID, IS, KID, precision/recall and density/coverage of checkpoints, or of
any images, labelled with their rule.

    python -m sngan.evaluate ckpt=outputs/run/checkpoints/best.pt metrics=fid50k_train
    python -m sngan.evaluate ckpt=outputs/run metrics=fid_paper        # every checkpoint: one table
    python -m sngan.evaluate images=samples/ dataset=cifar10 metrics=fid50k_train   # another trainer's samples

Each checkpoint's generator is scored (and its EMA generator, where the run kept
one) from the same fixed seed the run used in training, so an in-training number
and the evaluation of the same checkpoint under the same rule agree. The JSON
records the rule, sample counts, reference statistics and the Inception weights'
file and SHA-256.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sngan.cli.command_settings import EvaluateConfig, check_evaluate
from sngan.cli.errors import ensure_folder, run_or_exit
from sngan.cli.provenance import resolve_device
from sngan.cli.settings import check_stored
from sngan.cli.tables import (
    Doc,
    check_protocol,
    existing_table,
    format_row,
    format_values,
    merged,
    rows_report,
    write_json,
    write_results,
)
from sngan.cli.validation import validate_metrics
from sngan.config import ConfigError, DatasetConfig, MetricsConfig
from sngan.data.image_sets import ImageSet, load_image_set
from sngan.inference import EVAL_SEED_OFFSET, SeededSampler, generator_from_state
from sngan.metrics.class_scoring import class_reference_stats, intra_class_fid
from sngan.metrics.reference import MetricsError, split_of
from sngan.metrics.scoring import Extractor, Scorer, extractor_for, make_scorer
from sngan.training.speed import keep_freed_memory
from sngan.training.stopping import report_stops_with
from sngan.utils import checkpoint as ckpt
from sngan.utils.memory import out_of_memory


def checkpoints_of(target: Path) -> list[Path]:
    """The checkpoint itself, or a run folder's rolling checkpoints (oldest first) and best.pt."""
    if target.is_file():
        return [target]
    if not target.is_dir():
        raise ckpt.CheckpointError(f"ckpt='{target}' does not exist. Pass a checkpoint file or a run folder.")
    found = ckpt.list_checkpoints(target)
    best = target / ckpt.CHECKPOINT_DIR / "best.pt"
    found += [best] if best.is_file() else []
    if not found:
        raise ckpt.CheckpointError(
            f"Run folder '{target}' holds no checkpoints (looked in {target / ckpt.CHECKPOINT_DIR}). "
            f"Pass a run folder written by python -m sngan.train, or a checkpoint file."
        )
    return found


Networks = list[tuple[torch.nn.Module, dict[str, Any]]]


def networks_of(path: Path) -> tuple[dict[str, Any], Networks]:
    """A checkpoint's state and its generators to score: G, and the EMA generator where the run kept
    one. CheckpointError where the file cannot be read or its weights do not fit their architecture."""
    state = ckpt.load(path)
    networks = (False, True) if state.get("ema") is not None else (False,)
    return state, [generator_from_state(state, path, use_ema) for use_ema in networks]


def first_readable(paths: list[Path], skipped: list[str]) -> tuple[Path, dict[str, Any], Networks]:
    """The first checkpoint whose generators all load, with its state and generators; a run folder's
    earlier ones (pruned or damaged meanwhile) are added to ``skipped`` with a warning. The last one's
    error when none is readable (a single file: its own)."""
    for path in paths[:-1]:
        try:
            return path, *networks_of(path)
        except ckpt.CheckpointError as exc:
            skip(path, exc, skipped)
    return paths[-1], *networks_of(paths[-1])


def skip(path: Path, exc: Exception, skipped: list[str]) -> None:
    print(f"warning: {path} is left out of the table: {str(exc).split('. ')[0]}.", file=sys.stderr)
    skipped.append(str(path))


def run_dataset(cfg: EvaluateConfig, state: dict[str, Any]) -> DatasetConfig:
    """The dataset the checkpoint's run trained on (at ``data_root`` on this host, if given)."""
    run_cfg = check_stored(state["config"], state.get("provenance"))
    if cfg.data_root is not None:
        run_cfg.dataset.root = cfg.data_root
    validate_metrics(cfg.metrics, cfg.inception, run_cfg.dataset.name)
    return run_cfg.dataset


def scorer_for(
    cfg: EvaluateConfig,
    state: dict[str, Any],
    device: torch.device,
    extractor: Extractor | None = None,
) -> Scorer:
    """The scorer for this command's rule, on the dataset the checkpoint's run trained on."""
    scorer = make_scorer(cfg.metrics, cfg.inception, run_dataset(cfg, state), device, extractor=extractor)
    assert scorer is not None
    return dataclasses.replace(scorer, batch_size=cfg.batch_size)  # generated images a pass; same numbers


def check_intra_class(state: dict[str, Any]) -> None:
    if not state.get("classes"):
        raise ConfigError(
            "Invalid configuration: intra_class=true scores a class-conditional generator, but this checkpoint's "
            "run was unconditional. Drop intra_class, or evaluate a run trained with model.conditional=true."
        )


def intra_class_references(
    cfg: EvaluateConfig, state: dict[str, Any], extractor: Extractor, device: torch.device
) -> list[Any]:
    """Per-class statistics of the rule's reference images (intra_class=true; conditional runs only),
    cached beside the reference statistics."""
    check_intra_class(state)
    dataset = run_dataset(cfg, state)
    split = split_of(dataset, cfg.metrics.real_split)
    net, weights = extractor
    stats, _ = class_reference_stats(
        dataset, split, cfg.metrics.n_real, len(state["classes"]), cfg.inception, net, weights, device
    )
    return stats


def default_out(target: Path, rule: str) -> Path:
    """Beside the checkpoint (<ckpt>.<rule>.json), or in the run folder (eval_<rule>.json)."""
    return target / f"eval_{rule}.json" if target.is_dir() else target.with_suffix(f".{rule}.json")


def evaluate(cfg: EvaluateConfig) -> tuple[dict[str, Any], Path]:
    """Score every requested checkpoint (or the images of ``images=``); return the JSON document and where it
    was written. Each checkpoint's numbers are written as soon as they are measured."""
    if cfg.images is not None:
        return evaluate_images(cfg)
    assert cfg.ckpt is not None
    device, target = resolve_device(cfg.device), Path(cfg.ckpt)
    # Read the first checkpoint and check the output file: the refusals come before the slow part.
    paths, skipped = checkpoints_of(target), []
    first_path, first, first_nets = first_readable(paths, skipped)
    paths = paths[paths.index(first_path) :]
    out = Path(cfg.out) if cfg.out else default_out(target, cfg.metrics.name)
    old = existing_table(out, cfg.metrics.name, cfg.overwrite)  # a file that is not ours to replace
    written = [0]  # rows in out so far, for a Ctrl-C's message
    report_stops_with(lambda: rows_report(out, written[0], len(old["results"]) if old else 0))
    ensure_folder(out.parent)
    if cfg.intra_class:
        check_intra_class(first)
    extractor = extractor_for(cfg.metrics, cfg.inception)
    with out_of_memory(f"scoring on {device}", memory_advice(cfg), device, f"Nothing was lost: each "
                       f"checkpoint's numbers are written to {out} as soon as it is scored."):  # fmt: skip
        # Per-class statistics first: their feature pass also writes the reference statistics the scorer reads.
        references = intra_class_references(cfg, first, extractor, device) if cfg.intra_class else None
        scorer = scorer_for(cfg, first, device, extractor)
        per_class = max(2, cfg.metrics.n_fake // len(references)) if references is not None else 0
        seed = cfg.seed if cfg.seed is not None else int(first["config"].get("seed", 0)) + EVAL_SEED_OFFSET
        rows: list[dict[str, Any]] = []
        head = table_head(scorer, seed, first["classes"] if references is not None else None, per_class)
        check_protocol(out, old, {"intra_class": None} | head)  # before the first image is generated
        for path in paths:
            try:
                nets = first_nets if path == first_path else networks_of(path)[1]  # each file read once
            except ckpt.CheckpointError as exc:  # a run folder's file pruned or damaged meanwhile: the rest count
                skip(path, exc, skipped)
                continue
            for generator, info in nets:
                rows.append(score_network(scorer, generator.to(device), seed, references, per_class))
                rows[-1] = {
                    "checkpoint": str(path),
                    "step": info["step"],
                    "network": "ema" if info["ema"] else "g",
                } | rows[-1]
                print(format_row(scorer.rule.name, rows[-1]), file=sys.stderr)
                write_results(out, head, rows, skipped, old)
                written[0] = len(rows)
        return write_results(out, head, rows, skipped, old), out  # with the files skipped last


def memory_advice(cfg: EvaluateConfig) -> str:
    return (
        f"Generate and embed fewer images at once (batch_size={cfg.batch_size}, inception.batch_size="
        f"{cfg.inception.batch_size}, e.g. half), or score on another device (device=cpu)"
    )


def score_network(
    scorer: Scorer, generator: torch.nn.Module, seed: int, references: Any, per_class: int
) -> dict[str, Any]:
    """The rule's numbers for one generator from ``seed`` (and its intra-class FID, with ``references``)."""
    device = scorer.device
    row = scorer(SeededSampler(generator, device, seed))
    if references is not None:
        draw = lambda k: SeededSampler(generator, device, seed + k, label=k)  # noqa: E731
        row |= intra_class_fid(scorer, references, draw, per_class)
    return row


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


def table_head(scorer: Scorer, seed: int, classes: list[str] | None, per_class: int) -> Doc:
    """What the numbers of a checkpoint table mean: the rule, its protocol, the seed (and intra-class FID's)."""
    head = {**scorer.describe(), "seed": seed}
    if classes is not None:
        head["intra_class"] = {
            "n_fake_per_class": per_class,
            "real": "each class's images among the rule's reference images",
            "classes": classes,
        }
    return head


@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="evaluate")
def main(raw: DictConfig) -> None:
    keep_freed_memory()  # malloc keeps large freed blocks for reuse (sngan/training/speed.py)
    doc, out = run_or_exit(lambda: evaluate(check_evaluate(raw)))
    print(json.dumps(doc, indent=2))
    print(f"Wrote {out}.", file=sys.stderr)


if __name__ == "__main__":
    main()
