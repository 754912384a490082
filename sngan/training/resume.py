"""Which checkpoint a run resumes from, whether it fits, and loading it into the run.

Works on plain config dicts (the resolved config stored in checkpoints), so
it needs no Hydra types.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sngan.config import config_diff
from sngan.training.state import Run, keep_class_mix, restore
from sngan.utils import checkpoint as ckpt
from sngan.utils import distributed

# resume=auto, except that a run which already reached train.steps is left as it is: exit 0, nothing trained
SKIP_FINISHED = "auto_skip_finished"
# What a checkpoint written before a model key existed used (those keys came later, with these values).
OLD_MODEL_KEYS = {"z_dim": 128, "width": 1.0, "spectral_norm": True, "conditional": False}


def stored_constraint(config: dict[str, Any]) -> str:
    """The constraint a stored config trained with: its constraint.name, or, for a checkpoint from before
    the constraint group, the one its model.spectral_norm meant (true: sn, false: none)."""
    name = (config.get("constraint") or {}).get("name")
    if name is not None:
        return str(name)
    return "sn" if (OLD_MODEL_KEYS | config.get("model", {}))["spectral_norm"] else "none"


def held_run(run_dir: Path) -> list[str]:
    """What of a run ``run_dir`` holds, named for a message: its checkpoints (rolling, ``best.pt``, set
    aside) and its ``metrics.jsonl`` rows. Empty where no run saved or logged anything there (Hydra's
    files, a log or the config of a start refused or stopped before its first step are not a run)."""
    folder = Path(run_dir) / ckpt.CHECKPOINT_DIR
    rolling = ckpt.list_checkpoints(run_dir)
    held = [f"{len(rolling)} checkpoint(s), newest {rolling[-1].name}"] if rolling else []
    held += ["checkpoints/best.pt"] if (folder / "best.pt").is_file() else []
    aside = sorted(folder.glob("abandoned_after_*")) if folder.is_dir() else []
    held += [f"{len(aside)} folder(s) of set-aside checkpoints ({aside[0].name}, ...)"] if aside else []
    metrics = Path(run_dir) / "metrics.jsonl"
    with contextlib.suppress(OSError):
        rows = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        held += [f"metrics.jsonl ({rows} row{'s' if rows > 1 else ''})"] if rows else []
    return held


def find_resume(resume: str | None, run_dir: Path, config: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint to resume from, loaded: None (fresh run), 'auto' (the newest loadable checkpoint of
    this run folder, else its best.pt; None where the folder holds no run), a run folder (the same) or a
    file. A fresh start in a folder that already holds a run is refused, so an old run is never
    overwritten; so is resume=auto in a folder that holds a run but no checkpoint to continue it from.
    'auto_skip_finished' finds as 'auto' does (``finished_note`` then tells a finished run apart)."""
    resume = "auto" if resume == SKIP_FINISHED else resume
    held = held_run(run_dir)
    if resume is None:
        if not held:
            return None
        found = newest_or_best(run_dir, quiet=True)
        diff = [k for k in config_diff(found[1]["config"], config) if k != "resume"] if found else []
        detail = f" with another configuration (differs in {', '.join(diff)})" if diff else ""
        rolling = ckpt.list_checkpoints(run_dir)
        newest = f", newest checkpoint {rolling[-1].name}" if rolling else f" ({'; '.join(held)})"
        how = "Continue it with resume=auto, or start" if found else "It has no checkpoint to continue from: start"
        raise ckpt.CheckpointError(
            f"Run folder '{run_dir}' already holds a run{detail}{newest}. {how} a new run elsewhere "
            f"(hydra.run.dir=NEW_FOLDER); nothing was changed."
        )
    if resume != "auto":
        target = Path(resume).resolve()
        own = target == run_dir.resolve() or run_dir.resolve() in target.parents
        if not own and held:
            raise ckpt.CheckpointError(
                f"resume={resume} continues another run, but this run folder '{run_dir}' already holds a run of "
                f"its own ({'; '.join(held)}) that would be mixed with it. Use a new run folder "
                f"(hydra.run.dir=NEW_FOLDER), or resume=auto to continue this one; nothing was changed."
            )
    if resume != "auto" and not Path(resume).is_dir():
        hint = "Pass resume=auto (the newest checkpoint of this run folder), a run folder or an existing file."
        return Path(resume), ckpt.load(Path(resume), hint)
    folder = run_dir if resume == "auto" else Path(resume)
    held = held if resume == "auto" else held_run(folder)
    found = newest_or_best(folder)
    if found is None and (resume != "auto" or held):
        what = f" ({'; '.join(held)})" if held else ""
        raise ckpt.CheckpointError(
            f"Run folder '{folder}'{what} holds no loadable checkpoint to resume from. Resume from a checkpoint "
            f"file of it that loads (resume=PATH), or start a new run elsewhere (hydra.run.dir=NEW_FOLDER); "
            f"nothing was changed."
        )
    return found


def newest_or_best(folder: Path, quiet: bool = False) -> tuple[Path, dict[str, Any]] | None:
    """The newest rolling checkpoint of a run folder that loads, skipping (and, unless ``quiet``, reporting)
    newer damaged ones; where none loads or none is left, its ``best.pt``, with a note saying so."""
    best = Path(folder) / ckpt.CHECKPOINT_DIR / "best.pt"
    candidates = list(reversed(ckpt.list_checkpoints(folder))) + ([best] if best.is_file() else [])
    for path in candidates:
        try:
            state = ckpt.load(path)
        except ckpt.CheckpointError as exc:
            if not quiet:
                print(f"warning: skipping {exc}", file=sys.stderr)
            continue
        if path == best and not quiet:
            print(f"note: '{folder}' has no loadable rolling checkpoint (ckpt_<step>.pt); resuming from its "
                  f"best.pt, saved at step {state.get('step')}.", file=sys.stderr)  # fmt: skip
        return path, state
    return None


def later_checkpoints(run_dir: Path, step: int) -> list[Path]:
    """The run's checkpoints of steps after ``step`` (best.pt too, if later): what a resume from ``step``
    sets aside."""
    later = [p for p in ckpt.list_checkpoints(run_dir) if ckpt.step_of(p) > step]
    best = Path(run_dir) / ckpt.CHECKPOINT_DIR / "best.pt"
    with contextlib.suppress(ckpt.CheckpointError, KeyError, TypeError, ValueError):
        if best.is_file() and int(ckpt.load(best)["step"]) > step:
            later.append(best)
    return later


def set_aside_later(run_dir: Path, step: int) -> Path | None:
    """Once a resume has passed every check and the run starts: a run resumed from one of its own earlier
    checkpoints (a rewind, e.g. to before a divergence; or past a newer, damaged one) has its checkpoints of
    later steps, best.pt too if later, moved to ``checkpoints/abandoned_after_<step>_<time>_<id>/``, so that
    pruning keeps the resumed line's newest and resume=auto never returns to the abandoned one. Nothing is
    deleted. Returns that folder, or None where nothing was later."""
    later = later_checkpoints(run_dir, step)
    if not later:
        return None
    prefix = f"abandoned_after_{step}_{time.strftime('%Y%m%d-%H%M%S')}_"
    aside = Path(tempfile.mkdtemp(prefix=prefix, dir=Path(run_dir) / ckpt.CHECKPOINT_DIR))
    for path in later:
        path.rename(aside / path.name)
    print(
        f"note: resuming from step {step} of this run: its {len(later)} later checkpoint(s) "
        f"({', '.join(p.name for p in later)}) were moved to {aside}, so that the run goes on from step {step} "
        f"alone; nothing was deleted.",
        file=sys.stderr,
    )
    return aside


def check_architecture(stored: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose model settings or constraint (which builds D's layers) differ from this
    run's. Keys a checkpoint predates (e.g. ``conditional``) count as their schema default."""
    old, new = OLD_MODEL_KEYS | stored.get("model", {}), config["model"]
    diffs = [f"model.{k}: {old.get(k)!r} in the checkpoint, {new.get(k)!r} now" for k in config_diff(old, new)]
    was, now = stored_constraint(stored), stored_constraint(config)
    diffs += [f"constraint: {was!r} in the checkpoint, {now!r} now"] if was != now else []
    if diffs:
        what = "; ".join(diffs)
        raise ckpt.CheckpointError(
            f"Checkpoint '{path}' holds another architecture ({what}). Resume with the checkpoint's model "
            f"settings and constraint (constraint={was}), or start a fresh run without resume."
        )


# Settings that define the experiment: a resume that changes one no longer continues the same run.
# Everything else (steps, cadences, speed switches, metrics, device, paths) may change, with a note.
# train.ema_decay: null would drop the EMA's weights, another value restart its average; augment: what D sees.
EXPERIMENT = ("loss.", "optim.", "train.n_dis", "train.batch_size_d", "train.batch_size_g", "train.fake_labels",
              "train.ema_decay", "augment.", "dataset.", "seed", "constraint.")  # fmt: skip
SAFE_IN_DATASET = ("dataset.root", "dataset.cache")  # the same images elsewhere, or decoded again


def check_settings(stored: dict[str, Any], config: dict[str, Any], path: Path, step: int) -> list[str]:
    """Name what a resume changes. Settings of the experiment (loss, n_dis, batch sizes, optimizer, EMA,
    augmentation, data, seed) are refused unless ``resume_force=true``; a ``train.steps`` the checkpoint has reached is
    refused (nothing would be trained). Returns notes on the changes that are allowed."""
    changed = [k for k in config_diff(stored, config) if k not in ("resume", "resume_force", "run_name")]
    # check_architecture's business (the constraint's name builds D; its constants are the experiment's)
    changed = [k for k in changed if not k.startswith(("model.", "constraint.name", "constraint.spectral_norm"))]
    # A key the stored config lacks was not in the config files then (e.g. dataset.split of a synthetic run,
    # which that source does not read): the checkpoint chose nothing for it.
    changed = [k for k in changed if _has(stored, k)]
    show = lambda k: f"{k}: {_get(stored, k)!r} -> {_get(config, k)!r}"  # noqa: E731
    check_experiment(stored, config, path, changed)
    steps = config["train"]["steps"]
    if steps <= step:
        raise ckpt.CheckpointError(
            f"Checkpoint '{path}' is at step {step} and train.steps={steps}: there is nothing left to train. "
            f"To train on, raise train.steps above {step} (the learning-rate decay follows the new total)."
        )
    return [show(k) for k in changed]


def check_experiment(stored: dict[str, Any], config: dict[str, Any], path: Path, changed: list[str]) -> None:
    """Refuse ``changed`` settings of the experiment (``EXPERIMENT``) unless ``resume_force=true``."""
    show = lambda k: f"{k}: {_get(stored, k)!r} -> {_get(config, k)!r}"  # noqa: E731
    experiment = [k for k in changed if k.startswith(EXPERIMENT) and k not in SAFE_IN_DATASET]
    if experiment and not config.get("resume_force"):
        raise ckpt.CheckpointError(
            f"Resuming '{path}' with other experiment settings than it was trained with "
            f"({'; '.join(map(show, experiment))}) would no longer continue the same run. Resume with the "
            f"checkpoint's settings (they are in its run folder's config.yaml), start a new run without resume, "
            f"or add resume_force=true to continue it with the new settings anyway; nothing was changed."
        )


def finished_note(resume: str | None, found: tuple[Path, dict[str, Any]] | None, config: dict[str, Any]) -> str | None:
    """Under ``resume=auto_skip_finished`` (what sweeps use, so that a rerun trains only their unfinished
    cells): a note saying that this run folder's run already reached ``train.steps`` with these settings, and
    the caller trains nothing; else None. A finished run of other settings is refused, as a resume would."""
    if resume != SKIP_FINISHED or found is None:
        return None
    path, state = found
    step, steps = int(state["step"]), config["train"]["steps"]
    if step < steps:
        return None
    check_architecture(state["config"], config, path)
    changed = [k for k in config_diff(state["config"], config) if _has(state["config"], k)]
    check_experiment(state["config"], config, path, changed)
    return (
        f"the run in '{path.parent.parent}' is finished: {path.name} is at step {step} and train.steps={steps}. "
        f"Nothing was trained and the folder is left as it is (resume={SKIP_FINISHED}); raise train.steps to "
        f"train on."
    )


_ABSENT = object()


def _has(config: dict[str, Any], dotted: str) -> bool:
    return _get(config, dotted, _ABSENT) is not _ABSENT


def _get(config: dict[str, Any], dotted: str, absent: Any = None) -> Any:
    for part in dotted.split("."):
        config = config.get(part, absent) if isinstance(config, dict) else absent
    return config


def check_classes(stored: list[str] | None, run: Run, source: Path) -> None:
    """A conditional run resumes only on the classes it was trained on, in the same order."""
    if run.classes is not None and stored != run.classes:
        raise ckpt.CheckpointError(
            f"Checkpoint '{source}' was trained on the classes {stored}, but the dataset now has {run.classes}: "
            f"label k would mean another class. Restore the dataset's class folders as they were, or start a "
            f"new run (hydra.run.dir=NEW_FOLDER without resume)."
        )


def check_data(stored: dict[str, Any] | None, run: Run, source: Path, force: bool) -> str | None:
    """The images a run trains on are those its checkpoint trained on (``dataset.root`` may move them;
    their content digest must match). Refused unless ``force``; then the note to print. Checkpoints from
    before the digest was kept are not checked."""
    if not stored or run.data_digest is None or stored.get("digest") == run.data_digest:
        return None
    said = (
        f"the training images differ from those checkpoint '{source}' was trained on ({stored.get('count')} "
        f"images then, {run.data_count} now, with other content: their digest was {stored.get('digest')}, is "
        f"{run.data_digest})"
    )
    if force:
        return f"resume_force=true: resuming although {said}."
    raise ckpt.CheckpointError(
        f"Resuming would change the experiment: {said[0].upper()}{said[1:]}. Point dataset.root at the images "
        f"it trained on, start a new run without resume, or add resume_force=true to go on with these images "
        f"anyway; nothing was changed."
    )


def resume_from(
    run: Run, state: dict[str, Any], source: Path, config: dict[str, Any], seed: int, data_mix: bool
) -> None:
    """Check that the checkpoint fits this run and load it; the caller sets a rewound run's later checkpoints
    aside (``set_aside_later``) once the run starts (a dry run never does)."""
    here = distributed.current()
    check_architecture(state["config"], config, source)
    notes = check_settings(state["config"], config, source, int(state["step"]))
    check_classes(state.get("classes"), run, source)
    forced = check_data(state.get("data"), run, source, bool(config.get("resume_force")))
    restore(run, state, source, here.rank, seed)
    changed = keep_class_mix(run, state, data_mix)
    if here.is_main:
        if changed is not None:
            print(f"note: the dataset's images per class are now {changed}, but {source} was trained with "
                  f"{run.class_counts}; the run keeps drawing its fakes' classes with the checkpoint's "
                  f"mix. Start a new run to train with the new mix.", file=sys.stderr)  # fmt: skip
        if forced:
            print(f"note: {forced}", file=sys.stderr)
        if notes:
            print(f"note: resuming with changed settings ({'; '.join(notes)}); config.yaml now records them.",
                  file=sys.stderr)  # fmt: skip
        print(f"Resumed from {source} at step {run.step}.", file=sys.stderr)
