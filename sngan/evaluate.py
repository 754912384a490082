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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from sngan.cli.command_settings import EvaluateConfig, check_evaluate
from sngan.cli.errors import ensure_folder, run_or_exit
from sngan.cli.evaluate_images import evaluate_images
from sngan.cli.hydra_checks import typos_named
from sngan.cli.provenance import resolve_device
from sngan.cli.settings import check_stored
from sngan.cli.tables import (
    Doc,
    check_protocol,
    existing_table,
    format_row,
    rows_report,
    write_results,
)
from sngan.cli.validation import validate_metrics
from sngan.config import ConfigError, DatasetConfig, MetricsConfig
from sngan.inference import EVAL_SEED_OFFSET, SeededSampler, generator_from_state
from sngan.metrics.class_scoring import class_reference_stats, intra_class_fid
from sngan.metrics.reference import split_of
from sngan.metrics.scoring import Extractor, Scorer, extractor_for, make_scorer
from sngan.metrics.several import generated, score_several
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
    for rule in cfg.rules():
        validate_metrics(rule, cfg.inception, run_cfg.dataset.name)
    return run_cfg.dataset


def scorer_for(
    cfg: EvaluateConfig,
    state: dict[str, Any],
    device: torch.device,
    extractor: Extractor | None = None,
    rule: MetricsConfig | None = None,
) -> Scorer:
    """The scorer for ``rule`` (this command's ``metrics=``), on the dataset the checkpoint's run trained on."""
    rule = rule or cfg.metrics
    scorer = make_scorer(rule, cfg.inception, run_dataset(cfg, state), device, extractor=extractor)
    assert scorer is not None
    return dataclasses.replace(scorer, batch_size=cfg.batch_size)  # generated images a pass; same numbers


def scorers_for(cfg: EvaluateConfig, state: dict[str, Any], device: torch.device, main: Extractor) -> list[Scorer]:
    """The scorers of ``metrics=`` and of each ``also=`` rule; one network read per network, resize and size."""
    loaded: dict[tuple[str, str, int, bool], Extractor] = {}
    scorers = []
    for rule in cfg.rules():
        key = (rule.network, rule.resize, cfg.inception.dims, "is" in rule.measures)
        extractor = main if rule is cfg.metrics else loaded.get(key) or extractor_for(rule, cfg.inception)
        loaded.setdefault(key, extractor)
        scorers.append(scorer_for(cfg, state, device, extractor, rule))
    return scorers


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
    rules = cfg.rules()
    outs = [Path(cfg.out) if cfg.out else default_out(target, rule.name) for rule in rules]
    olds = [existing_table(out, rule.name, cfg.overwrite) for out, rule in zip(outs, rules, strict=True)]
    written = [0]  # rows in each table so far, for a Ctrl-C's message
    report_stops_with(lambda: "; ".join(rows_report(o, written[0], len(old["results"]) if old else 0)
                                        for o, old in zip(outs, olds, strict=True)))  # fmt: skip
    for out in outs:
        ensure_folder(out.parent)
    if cfg.intra_class:
        check_intra_class(first)
    extractor = extractor_for(cfg.metrics, cfg.inception)
    with out_of_memory(f"scoring on {device}", memory_advice(cfg), device, f"Nothing was lost: each "
                       f"checkpoint's numbers are written to {outs[0]} as soon as it is scored."):  # fmt: skip
        # Per-class statistics first: their feature pass also writes the reference statistics the scorer reads.
        references = intra_class_references(cfg, first, extractor, device) if cfg.intra_class else None
        scorers = scorers_for(cfg, first, device, extractor)
        per_class = max(2, cfg.metrics.n_fake // len(references)) if references is not None else 0
        seed = cfg.seed if cfg.seed is not None else int(first["config"].get("seed", 0)) + EVAL_SEED_OFFSET
        tables: list[list[dict[str, Any]]] = [[] for _ in rules]
        heads = [table_head(s, seed, first["classes"] if references is not None else None, per_class) for s in scorers]
        for out, old, head in zip(outs, olds, heads, strict=True):
            check_protocol(out, old, {"intra_class": None} | head)  # before the first image is generated
        files = [(path, first_nets if path == first_path else None) for path in paths]  # each file read once
        for path, nets, numbers in scored(files, skipped, scorers, seed, references, per_class, cfg.batch_size):
            for rows, out, old, head, found in zip(tables, outs, olds, heads, numbers, strict=True):
                rows.append({"checkpoint": str(path)} | nets | found)
                print(format_row(head["rule"], rows[-1]), file=sys.stderr)
                write_results(out, head, rows, skipped, old)
            written[0] = len(tables[0])
        for rows, out, old, head in zip(tables[1:], outs[1:], olds[1:], heads[1:], strict=True):
            write_results(out, head, rows, skipped, old)  # with the files skipped last
        return write_results(outs[0], heads[0], tables[0], skipped, olds[0]), outs[0]


def scored(
    files: list[tuple[Path, Networks | None]], skipped: list[str], scorers: list[Scorer], seed: int,
    references: Any, per_class: int, batch: int,
) -> Iterator[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:  # fmt: skip
    """(file, {step, network}, each rule's numbers) of every generator of every readable file, in order."""
    device = scorers[0].device
    for path, nets in files:
        try:
            nets = nets if nets is not None else networks_of(path)[1]
        except ckpt.CheckpointError as exc:  # a run folder's file pruned or damaged meanwhile: the rest count
            skip(path, exc, skipped)
            continue
        for generator, info in nets:
            found = score_rules(scorers, generator.to(device), seed, references, per_class, batch)
            yield path, {"step": info["step"], "network": "ema" if info["ema"] else "g"}, found


def score_rules(
    scorers: list[Scorer], generator: torch.nn.Module, seed: int, references: Any, per_class: int, batch: int
) -> list[dict[str, Any]]:
    """Each rule's numbers for one generator from ``seed``: one rule as its scorer computes them (with intra-class
    FID); several from one set of generated images (sngan/metrics/several.py)."""
    if len(scorers) == 1:
        return [score_network(scorers[0], generator, seed, references, per_class)]
    images = generated(SeededSampler(generator, scorers[0].device, seed), scorers, batch)
    return score_several(scorers, images)


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


@typos_named(EvaluateConfig)
@hydra.main(version_base="1.3", config_path="pkg://sngan.configs", config_name="evaluate")
def main(raw: DictConfig) -> None:
    keep_freed_memory()  # malloc keeps large freed blocks for reuse (sngan/training/speed.py)
    doc, out = run_or_exit(lambda: evaluate(check_evaluate(raw)))
    print(json.dumps(doc, indent=2))
    print(f"Wrote {out}.", file=sys.stderr)


if __name__ == "__main__":
    main()
