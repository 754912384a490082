"""Bad input, every category, for every command where it applies: train, evaluate, sample, fid_stats,
export. Each row runs the command in-process exactly as its entry point does (compose the command's
config, then the body under ``run_or_exit``) and expects either a one-paragraph error and exit code 2,
or correct handling (grayscale/RGBA/odd-size images are converted). A few real subprocess runs prove
the exit codes of the command line itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import THREADS, TINY, run_training
from hydra import compose, initialize_config_module
from hydra.errors import HydraException
from PIL import Image

from sngan.cli.command_settings import check_evaluate, check_export, check_fid_stats, check_sample
from sngan.cli.errors import run_or_exit
from sngan.cli.settings import check_train
from sngan.cli.start import start
from sngan.config import to_container
from sngan.evaluate import evaluate
from sngan.fid_stats import compute
from sngan.inference import export_generator
from sngan.sample import sample
from sngan.training.iteration import NonFiniteError
from sngan.utils import checkpoint as ckpt

MARKER = Path("/tmp/sngan-bad-input-marker")
TRAIN = [o for o in TINY if not o.startswith("dataset.size")] + ["train.steps=1"]
SMALL_RULE = [
    "metrics=fid_paper", "metrics.name=t", "metrics.n_fake=8", "metrics.n_real=20", "metrics.is_splits=2",
    "metrics.is_split_size=4", "metrics.kid_subsets=2", "metrics.kid_subset_size=8", "inception.dims=64",
]  # fmt: skip


def folder(key: str, *more: str) -> list[str]:
    """fid_stats on one of the fixture's image folders, at 32x32."""
    return ["dataset=folder", f"dataset.root={{{key}}}", "dataset.resolution=32", *more]


class _Planted:
    def __reduce__(self):
        return (open, (str(MARKER), "w"))


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Every kind of bad (and odd but fine) input, made once."""
    root = tmp_path_factory.mktemp("bad_input")
    f: dict[str, Path] = {"root": root}
    run_training(root / "run", TINY + ["train.steps=2"])
    f["ckpt"] = ckpt.find_latest(root / "run")
    f["corrupt"] = root / "corrupt.pt"
    f["corrupt"].write_bytes(f["ckpt"].read_bytes()[:4000])
    f["evil"] = root / "evil.pt"
    torch.save({"format_version": 1, "payload": _Planted()}, f["evil"])
    state = ckpt.load(f["ckpt"])  # weights of width 0.125 labelled as width 0.25
    state["config"]["model"]["width"] = 0.25
    f["other_arch"] = ckpt.save_atomic(state, root / "other_arch.pt")
    state = ckpt.load(f["ckpt"])  # a run on CIFAR-10 whose data is not on this host
    state["config"]["dataset"] = {"name": "cifar10", "root": str(root / "no_cifar"), "split": "train"}
    f["cifar_run"] = ckpt.save_atomic(state, root / "cifar_run.pt")
    f["missing"] = root / "missing"
    f["file"] = root / "a_file"
    f["file"].write_text("not a folder")
    for name in ("empty", "nonimages", "garbage", "truncated", "mixed"):
        (root / name).mkdir()
        f[name] = root / name
    (root / "nonimages" / "notes.txt").write_text("hello")
    (root / "nonimages" / "data.csv").write_text("1,2,3")
    (root / "garbage" / "x.png").write_bytes(b"\x89PNG but not really" * 10)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(root / "t.png")
    (root / "truncated" / "t.png").write_bytes((root / "t.png").read_bytes()[:3000])
    rng = np.random.default_rng(1)
    for i in range(8):  # grayscale, RGBA, palette, odd sizes: converted, resized, centre-cropped
        Image.fromarray(rng.integers(0, 255, (37, 53), dtype=np.uint8), "L").save(root / "mixed" / f"g{i}.png")
        Image.fromarray(rng.integers(0, 255, (61, 29, 4), dtype=np.uint8), "RGBA").save(root / "mixed" / f"a{i}.png")
        Image.fromarray(rng.integers(0, 255, (33, 33, 3), dtype=np.uint8)).convert("P").save(
            root / "mixed" / f"p{i}.png"  # a palette PNG (GIF is not an image type sngan reads)
        )
        Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(root / "mixed" / f"j{i}.jpg")
    return f


def _body(command: str, raw, run_dir: Path):
    if command == "train":
        return lambda: start(check_train(raw), to_container(raw), run_dir)
    return {
        "evaluate": lambda: evaluate(check_evaluate(raw)),
        "sample": lambda: sample(check_sample(raw)),
        "fid_stats": lambda: compute(check_fid_stats(raw)),
        "export": lambda: export_generator(*_export_args(check_export(raw))),
    }[command]


def _export_args(cfg):
    return cfg.ckpt, cfg.out, cfg.ema


def invoke(command: str, overrides: list[str], run_dir: Path) -> int:
    """Run a command in-process as its entry point does; return its exit code (0: success)."""
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name=command, overrides=overrides)
    torch.set_num_threads(THREADS)
    try:
        run_or_exit(_body(command, raw, run_dir), NonFiniteError)
    except SystemExit as stop:
        return int(stop.code)
    return 0


# (command, category, overrides with {placeholders}, expected stderr fragment; None: must succeed)
TABLE = [
    # wrong type
    ("train", "wrong type", TRAIN + ["train.steps=abc"], "train.steps"),
    ("evaluate", "wrong type", ["ckpt={ckpt}", "batch_size=abc"], "batch_size"),
    ("sample", "wrong type", ["ckpt={ckpt}", "n=many"], "'n'"),
    ("fid_stats", "wrong type", ["dataset=folder", "dataset.root={mixed}", "n=abc"], "'n'"),
    # out-of-range value
    ("train", "out of range", TRAIN + ["train.n_dis=0"], "train.n_dis=0"),
    ("evaluate", "out of range", ["ckpt={ckpt}", "inception.dims=100"], "inception.dims=100"),
    ("sample", "out of range", ["ckpt={ckpt}", "n=0"], "n=0"),
    ("fid_stats", "out of range", ["dataset=folder", "dataset.root={mixed}", "n=1"], "n=1"),
    ("export", "out of range", ["ckpt={ckpt}", "ema=maybe"], "ema='maybe'"),
    ("evaluate", "out of range", ["ckpt={corrupt}", "metrics=none"], "evaluates nothing"),
    ("fid_stats", "out of range", folder("mixed", "inception.dims=5"), "dims"),
    ("fid_stats", "out of range", ["dataset=folder", "dataset.root={mixed}"], "dataset.resolution"),
    # missing path
    ("train", "missing path", TRAIN + ["dataset=folder", "dataset.root={missing}"], "does not exist"),
    ("train", "missing path", TRAIN + ["resume={missing}.pt"], "does not exist"),
    ("evaluate", "missing path", ["ckpt={missing}.pt"], "does not exist"),
    ("evaluate", "missing path", ["images={missing}", "dataset=cifar10"], "does not exist"),
    ("sample", "missing path", ["ckpt={missing}.pt"], "does not exist"),
    (
        "fid_stats",
        "missing path",
        folder("missing"),
        "does not exist",
    ),
    ("export", "missing path", ["ckpt={missing}.pt"], "does not exist"),
    # empty folder
    ("train", "empty folder", TRAIN + ["dataset=folder", "dataset.root={empty}"], "holds no images"),
    ("evaluate", "empty folder", ["ckpt={empty}"], "holds no checkpoints"),
    ("evaluate", "empty folder", ["images={empty}", "dataset=cifar10"], "holds no images"),
    ("sample", "empty folder", ["ckpt={empty}"], "is a folder, not a checkpoint"),
    (
        "fid_stats",
        "empty folder",
        folder("empty"),
        "holds no images",
    ),
    # folder of non-images
    ("train", "non-images", TRAIN + ["dataset=folder", "dataset.root={nonimages}"], "holds no images"),
    ("evaluate", "non-images", ["images={nonimages}", "dataset=cifar10"], "holds no images"),
    (
        "fid_stats",
        "non-images",
        folder("nonimages"),
        "holds no images",
    ),
    # unreadable or truncated image files
    ("train", "unreadable image", TRAIN + ["dataset=folder", "dataset.root={garbage}"], "Cannot decode image"),
    ("train", "truncated image", TRAIN + ["dataset=folder", "dataset.root={truncated}"], "Cannot decode image"),
    ("evaluate", "unreadable image", ["images={garbage}", "dataset=cifar10"], "Cannot decode image"),
    ("evaluate", "truncated image", ["images={truncated}", "dataset=cifar10"], "Cannot decode image"),
    (
        "fid_stats",
        "unreadable image",
        folder("garbage"),
        "Cannot decode",
    ),
    (
        "fid_stats",
        "truncated image",
        folder("truncated"),
        "Cannot decode",
    ),
    # grayscale / RGBA / palette / odd-size images: handled
    ("train", "grayscale/RGBA/odd size", TRAIN + ["dataset=folder", "dataset.root={mixed}"], None),
    ("fid_stats", "grayscale/RGBA/odd size", folder("mixed"), None),
    ("evaluate", "grayscale/RGBA/odd size", ["images={mixed}", *folder("mixed"), *SMALL_RULE], None),  # resized
    # fewer images than the rule scores
    (
        "evaluate",
        "too few images",
        ["images={mixed}", *folder("mixed"), *SMALL_RULE, "metrics.n_fake=100"],
        "holds 32 images but rule t scores 100",
    ),
    # corrupt checkpoint
    ("train", "corrupt checkpoint", TRAIN + ["resume={corrupt}"], "cannot be read"),
    ("evaluate", "corrupt checkpoint", ["ckpt={corrupt}"], "cannot be read"),
    ("sample", "corrupt checkpoint", ["ckpt={corrupt}"], "cannot be read"),
    ("export", "corrupt checkpoint", ["ckpt={corrupt}"], "cannot be read"),
    # checkpoint of another architecture
    (
        "train",
        "other architecture",
        TINY + ["train.steps=4", "model.width=0.25", "resume={ckpt}"],
        "another architecture",
    ),
    ("evaluate", "other architecture", ["ckpt={other_arch}"], "do not fit the architecture"),
    ("sample", "other architecture", ["ckpt={other_arch}"], "do not fit the architecture"),
    ("export", "other architecture", ["ckpt={other_arch}"], "do not fit the architecture"),
    # malicious checkpoint (pickled code): refused without running it
    ("train", "malicious checkpoint", TRAIN + ["resume={evil}"], "cannot be read"),
    ("evaluate", "malicious checkpoint", ["ckpt={evil}"], "cannot be read"),
    ("sample", "malicious checkpoint", ["ckpt={evil}"], "cannot be read"),
    ("export", "malicious checkpoint", ["ckpt={evil}"], "cannot be read"),
    # unwritable output folder (a path below a regular file; tests run as root, so permissions cannot block)
    ("train", "unwritable output", TRAIN + ["__run_dir__={file}/run"], "a_file"),
    ("evaluate", "unwritable output", ["ckpt={ckpt}", "out={file}/x.json"], "a_file"),
    ("sample", "unwritable output", ["ckpt={ckpt}", "out={file}/samples"], "a_file"),
    (
        "fid_stats",
        "unwritable output",
        folder("mixed", "inception.stats_dir={file}/stats"),
        "a_file",
    ),  # fmt: skip
    ("export", "unwritable output", ["ckpt={ckpt}", "out={file}/g.safetensors"], "a_file"),
    # missing Inception weights
    (
        "train",
        "missing Inception weights",
        TINY + SMALL_RULE + ["train.steps=1", "inception.weights={missing}.pth"],
        "pt_inception-2015-12-05-6726825d.pth",
    ),  # fmt: skip
    ("evaluate", "missing Inception weights", ["ckpt={ckpt}", "inception.weights={missing}.pth"], "inception.weights"),
    (
        "fid_stats",
        "missing Inception weights",
        folder("mixed", "inception.weights={missing}.pth"),
        "inception.weights",
    ),  # fmt: skip
    # dataset download impossible
    ("train", "download impossible", TRAIN + ["dataset=cifar10", "model=cnn32", "dataset.root={missing}"], "download"),
    ("evaluate", "download impossible", ["ckpt={cifar_run}"] + SMALL_RULE, "download"),
    ("fid_stats", "download impossible", ["dataset=cifar10", "dataset.root={missing}"], "download"),
]


@pytest.fixture
def offline(monkeypatch):
    import torchvision.datasets.utils as utils

    def fail(*args, **kwargs):
        raise OSError("Network is unreachable (simulated: no dataset host can be reached in tests)")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", fail)
    monkeypatch.setattr(utils, "download_and_extract_archive", fail)


@pytest.mark.parametrize(
    ("command", "category", "overrides", "expected"),
    TABLE,
    ids=[f"{c}-{k}-{i}" for i, (c, k, _, _) in enumerate(TABLE)],
)
def test_bad_input(command, category, overrides, expected, files, with_inception, offline, tmp_path, capsys):
    MARKER.unlink(missing_ok=True)
    values = {k: str(v) for k, v in files.items()}
    filled = [o.format(**values) for o in overrides]
    run_dir = tmp_path / "run"
    for o in [o for o in filled if o.startswith("__run_dir__=")]:
        run_dir = Path(o.split("=", 1)[1])
        filled.remove(o)
    if command in ("evaluate", "sample", "fid_stats"):
        filled.append("device=cpu")
    if command == "sample" and not any(o.startswith("out=") for o in filled):
        filled.append(f"out={tmp_path / 'out'}")
    code = invoke(command, filled, run_dir)
    err = capsys.readouterr().err
    if expected is None:
        assert code == 0, err
        return
    assert code == 2, err
    message = err.strip().splitlines()
    assert message and message[-1].startswith("error: ") and expected in message[-1], err
    assert "Traceback" not in err
    assert not MARKER.exists()  # no pickled code ran


@pytest.mark.parametrize("command", ["train", "evaluate", "sample", "fid_stats", "export"])
def test_unknown_option_is_refused_at_composition(command):
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        with pytest.raises(HydraException, match="nosuchkey"):
            compose(config_name=command, overrides=["nosuchkey=1"])
        if command in ("train", "evaluate"):
            with pytest.raises(HydraException, match="nosuchrule"):
                compose(config_name=command, overrides=["metrics=nosuchrule"])


def test_every_category_is_covered_for_every_command_where_it_applies():
    covered = {(c, k) for c, k, _, _ in TABLE}
    categories = {k for _, k, _, _ in TABLE}
    assert len(categories) == 15  # plus unknown options, refused at composition (test below)
    for command in ("train", "evaluate", "sample", "fid_stats"):
        for category in ("wrong type", "out of range", "missing path", "unwritable output"):
            assert (command, category) in covered
    for command in ("train", "evaluate", "sample"):
        for category in ("corrupt checkpoint", "other architecture", "malicious checkpoint"):
            assert (command, category) in covered


@pytest.mark.parametrize(
    ("command", "overrides", "code"),
    [
        ("train", ["experiment=quickstart", "nosuchkey=1"], 2),  # the schema's message, naming the settings
        ("train", ["experiment=quickstart", "model=nosuchmodel"], 1),  # Hydra's own message (its options), no traceback
        ("train", ["experiment=quickstart", "hydra.run.dir={file}/run"], 2),
        ("sample", ["ckpt={evil}"], 2),
        ("evaluate", ["ckpt={empty}"], 2),
        ("fid_stats", folder("empty"), 2),
        ("export", ["ckpt={missing}.pt"], 2),
        ("sample", [], 2),  # a required value left out: one line naming it
    ],
)
def test_command_line_exit_codes(command, overrides, code, files, with_inception, tmp_path):
    """Each command through its entry point, as a user runs it: the exit code, no traceback, a user error as
    one line, and nothing left behind in the working directory (no stray output folders or logs)."""
    MARKER.unlink(missing_ok=True)
    values = {k: str(v) for k, v in files.items()}
    proc = subprocess.run(
        [sys.executable, "-m", f"sngan.{command}", *[o.format(**values) for o in overrides]],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=dict(os.environ, HYDRA_FULL_ERROR="0"),
    )  # fmt: skip
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip()
    if code == 2:
        assert proc.stderr.strip().startswith("error:") and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert not MARKER.exists()
    assert list(tmp_path.iterdir()) == []
