"""augment=diffaugment|ada: each transform does what it says at p = 1, nothing at p = 0 and lets gradients
through; ADA's p follows r_t at the stated speed; D alone sees augmented images; resume stays bit-exact."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY, compose_cfg, run_training, sample_cfg, validated

from sngan.config import ConfigError
from sngan.training.augment import COLOUR, GEOMETRIC, Augment, color, colour, cutout, geometric, translation
from sngan.utils import checkpoint as ckpt

TRANSFORMS = {"color": color, "translation": translation, "cutout": cutout, "ada-geometric": geometric,
              "ada-colour": colour}  # fmt: skip


def images(n: int = 6, size: int = 16) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(n, 3, size, size) * 2 - 1


@pytest.mark.parametrize("name", TRANSFORMS)
def test_each_transform_is_the_identity_at_p_0_changes_every_image_at_p_1_and_is_differentiable(name):
    transform, x = TRANSFORMS[name], images()
    assert torch.equal(transform(x, 0.0), x)  # exactly: not resampled, not rounded
    assert torch.equal(transform(x, torch.tensor(0.0)), x)  # p as the tensor the trainer keeps
    torch.manual_seed(1)
    y = transform(x, 1.0)
    assert y.shape == x.shape and all(not torch.equal(a, b) for a, b in zip(y, x)), name
    x = x.clone().requires_grad_(True)
    (transform(x, 1.0) * torch.randn_like(x)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_shifts_each_image_by_at_most_an_eighth_filling_with_zeros():
    x = torch.arange(1, 2 * 3 * 16 * 16 + 1, dtype=torch.float32).view(2, 3, 16, 16)
    y = translation(x, 1.0)
    for a, b in zip(x, y):
        shifts = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                  if torch.equal(b, shifted(a, dy, dx))]  # fmt: skip
        assert len(shifts) == 1, "each image is one shift of itself, at most 2 = 16/8 pixels"


def shifted(a: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(a)
    h, w = a.shape[-2:]
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = a[:, max(-dy, 0) : h - max(dy, 0),
                                                                      max(-dx, 0) : w - max(dx, 0)]  # fmt: skip
    return out


def test_cutout_zeroes_one_square_of_half_the_side_and_keeps_the_rest():
    x = images(8, 16) + 3  # no zeros of its own
    y = cutout(x, 1.0)
    for a, b in zip(x, y):
        hole = (b == 0).all(0)
        assert torch.equal(b[:, ~hole], a[:, ~hole]) and 0 < hole.sum() <= 64
        rows, cols = hole.any(1).nonzero().flatten(), hole.any(0).nonzero().flatten()
        assert hole.sum() == len(rows) * len(cols) and len(rows) <= 8 and len(cols) <= 8  # a rectangle, clipped


def test_color_moves_a_grey_image_by_one_brightness_per_image():
    """Saturation and contrast leave a flat grey image as it is: only brightness (+-0.5) remains."""
    x = torch.full((6, 3, 8, 8), 0.1)
    y = color(x, 1.0)
    moved = (y - x).flatten(1)
    assert torch.allclose(moved, moved[:, :1].expand_as(moved), atol=1e-6) and moved.abs().max() <= 0.5


def test_ada_geometric_transforms_resample_within_the_images_range():
    x = images()
    y = geometric(x, 1.0)
    assert y.min() >= x.min() - 1e-5 and y.max() <= x.max() + 1e-5  # bilinear, reflected at the borders


def test_the_ada_controller_moves_p_at_the_stated_speed_toward_the_target():
    """A stand-in D: all outputs on real images positive (r_t = 1, above 0.6) raise p by the images seen over
    speed_kimg * 1000 at every adjustment; all negative (r_t = -1) lower it, never below 0."""
    ada = Augment("ada", torch.device("cpu"), p=0.0, adaptive=True, target=0.6, interval=4, speed_kimg=1)
    for _ in range(3):
        ada.observe(torch.ones(10), images=10)
    assert ada.p.item() == 0.0  # 3 of the 4 D updates of an interval: not adjusted yet
    ada.observe(torch.ones(10), images=10)
    assert ada.rt.item() == 1.0 and ada.p.item() == pytest.approx(40 / 1000)
    for _ in range(8):
        ada.observe(torch.ones(10), images=10)
    assert ada.p.item() == pytest.approx(120 / 1000)
    for _ in range(4):
        ada.observe(-torch.ones(10), images=10)
    assert ada.rt.item() == -1.0 and ada.p.item() == pytest.approx(80 / 1000)
    for _ in range(40):
        ada.observe(-torch.ones(10), images=10)
    assert ada.p.item() == 0.0  # clamped
    mixed = torch.tensor([1.0] * 8 + [-1.0] * 2)  # r_t = 0.6: at the target, p stays
    for _ in range(4):
        ada.observe(mixed, images=10)
    assert ada.rt.item() == pytest.approx(0.6) and ada.p.item() == 0.0
    fixed = Augment("ada", torch.device("cpu"), p=0.3, adaptive=False)
    for _ in range(8):
        fixed.observe(torch.ones(10), images=10)
    assert fixed.p.item() == pytest.approx(0.3) and fixed.rt.item() == 1.0  # r_t measured, p fixed
    assert set(fixed.scalars()) == {"augment/p", "augment/rt", "augment/target"}
    diff = Augment("diffaugment", torch.device("cpu"), p=1.0)
    diff.observe(torch.ones(10), images=10)
    assert set(diff.scalars()) == {"augment/p"}


@pytest.mark.parametrize(
    ("override", "key", "valid"),
    [("augment.policy=[color,rotate]", "augment.policy", "color, translation, cutout"),
     ("augment.p=1.5", "augment.p", "between 0 and 1"), ("augment.p=-0.1", "augment.p", "between 0 and 1"),
     ("augment.target=1.0", "augment.target", "strictly between 0 and 1"),
     ("augment.target=0", "augment.target", "strictly between 0 and 1"),
     ("augment.interval=0", "augment.interval", "greater than 0")],
)  # fmt: skip
def test_bad_augment_settings_are_refused_with_the_valid_choices(override, key, valid):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as caught:
        validated(compose_cfg(TINY + ["augment=ada", override]))
    assert valid in str(caught.value)


def test_an_adaptive_p_outside_ada_is_refused():
    with pytest.raises(ConfigError, match=r"augment\.adaptive.*augment=ada only, not augment=diffaugment"):
        validated(compose_cfg(TINY + ["augment=diffaugment", "augment.adaptive=true"]))
    validated(compose_cfg(TINY + ["augment=ada", "augment.adaptive=false", "augment.p=0.3"]))  # a fixed p: fine


FAST_ADA = ["augment=ada", "augment.speed_kimg=0.05", "augment.interval=1"]  # p moves visibly in a few steps


def test_resume_with_ada_is_bit_exact_and_p_is_checkpointed(tmp_path):
    # 2 D updates a step, r_t over 3: the checkpoint at step 2 holds a window 1/3 full (4 updates, 1 adjustment)
    common = TINY + FAST_ADA + ["augment.interval=3", "train.steps=4", "train.n_dis=2", "train.keep_checkpoints=10"]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    run_training(straight, common)
    run_training(resumed, common + [f"resume={ckpt.checkpoint_path(straight, 2)}"])
    a, b = ckpt.load(ckpt.checkpoint_path(straight, 4)), ckpt.load(ckpt.checkpoint_path(resumed, 4))
    assert (
        a["augment"]["p"].item() > 0
        and ckpt.load(ckpt.checkpoint_path(straight, 2))["augment"]["p"] != a["augment"]["p"]
    )
    half = ckpt.load(ckpt.checkpoint_path(straight, 2))["augment"]
    assert half["updates"] == 1 and half["signs"][1].item() == 8  # one D update's 8 real outputs, kept
    for key in ("p", "signs", "rt", "updates", "images"):
        assert torch.equal(torch.as_tensor(a["augment"][key]), torch.as_tensor(b["augment"][key])), key
    for net in ("generator", "discriminator"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net


@pytest.mark.parametrize("loss", ["hinge", "nonsaturating", "wasserstein"])
@pytest.mark.parametrize("augment", ["diffaugment", "ada"])
def test_every_loss_trains_with_each_augmentation(tmp_path, loss, augment):
    result = run_training(tmp_path, TINY + [f"augment={augment}", f"loss={loss}", "train.steps=2"])
    assert result and all(torch.isfinite(torch.tensor(v)) for v in result.values())


@pytest.mark.parametrize("augment", [["augment=diffaugment"], FAST_ADA])
def test_a_conditional_resnet_trains_with_each_augmentation(tmp_path, monkeypatch, augment):
    """The projection D sees augmented images (real and fake with their labels) in both updates, and ADA's
    heuristic its outputs on the real ones."""
    sizes, observed = [], []
    call, observe = Augment.__call__, Augment.observe
    monkeypatch.setattr(Augment, "__call__", lambda self, x: sizes.append(x.shape[0]) or call(self, x))
    monkeypatch.setattr(Augment, "observe", lambda self, out, n: observed.append(out.numel()) or observe(self, out, n))
    overrides = ["model=resnet32", "model.conditional=true", "dataset.modes=3", "train.steps=2", "train.batch_size_g=6"]
    result = run_training(tmp_path, TINY + augment + overrides)
    assert sizes == [16, 6] * 2 and observed == [8, 8], (sizes, observed)
    assert result and all(torch.isfinite(torch.tensor(v)) for v in result.values())
    state = ckpt.load(ckpt.find_latest(tmp_path))
    assert state["step"] == 2 and state["classes"] == ["prototype_0", "prototype_1", "prototype_2"]


def test_evaluation_and_samples_never_augment(tmp_path):
    """The same weights score the same and draw the same grid whatever augment says."""
    from sngan.cli.build import build_run
    from sngan.data import load_images
    from sngan.training.evaluation import score
    from sngan.training.tracking import NullTracker

    data = load_images("synthetic", "data", 32, synthetic_size=200)
    scores = []
    for augment in ("none", "ada"):
        cfg = validated(compose_cfg(TINY + [f"augment={augment}", "augment.p=1.0"]))
        run = build_run(cfg, data, torch.device("cpu"))
        assert (run.augment is None) == (augment == "none")
        scores.append(score(run, data, NullTracker(tmp_path), None, cfg.seed, 100))
    assert scores[0] == scores[1] and scores[0]


def test_d_sees_augmented_images_in_both_updates_and_the_progress_line_shows_p_and_r_t(tmp_path, monkeypatch, capsys):
    """Every image D sees goes through the augmentation: the real and fake batch of each D update (8 + 8) and
    the fakes of the G update (6); p and r_t are in the progress line."""
    import re

    sizes = []
    call = Augment.__call__
    monkeypatch.setattr(Augment, "__call__", lambda self, x: sizes.append(x.shape[0]) or call(self, x))
    run_training(tmp_path, TINY + FAST_ADA + ["train.steps=2", "train.n_dis=2", "train.batch_size_g=6"])
    assert sizes == [16, 16, 6] * 2, sizes
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("step 2/2")]
    assert len(lines) == 1 and re.search(r"augment/p=0\.\d+ augment/rt=\S+", lines[0]), lines


def test_a_snapshot_of_the_heuristic_is_a_copy_that_can_be_put_back_twice():
    """On the CPU a tensor's .cpu() is the tensor itself: a snapshot must still not change as training goes on
    (a failed step put back by on_nonfinite=stop or a compile fallback, possibly twice)."""
    aug = Augment("ada", torch.device("cpu"), 0.0, adaptive=True, interval=3)
    aug.observe(torch.tensor([1.0, 1.0, -1.0, float("nan")]), 4)  # a non-finite output counts as 0
    snap = aug.state_dict(torch.device("cpu"))
    for _ in range(2):
        aug.observe(torch.ones(4), 4)
        assert aug.updates == 2 and aug.signs.tolist() == [5.0, 8.0]
        aug.load_state_dict(snap)
        assert aug.updates == 1 and aug.signs.tolist() == [1.0, 4.0] and snap["signs"].tolist() == [1.0, 4.0]
    aug.observe(torch.ones(4), 4), aug.observe(torch.ones(4), 4)  # the third update adjusts: r_t 9 / 12
    assert aug.rt.item() == pytest.approx(0.75) and aug.p.item() > 0 and aug.signs.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("name", GEOMETRIC + COLOUR)
def test_each_of_adas_transforms_alone_is_the_identity_at_p_0_and_moves_images_at_p_1(name):
    transform = geometric if name in GEOMETRIC else colour
    x = images(64)
    assert torch.equal(transform(x, 0.0, transforms={name}), x)
    moved = (transform(x, 1.0, transforms={name}) - x).flatten(1).abs().amax(1) > 1e-4
    # x-flip, 90-degree rotations, integer translation and luma flip leave some images as they are (a flip of
    # +1, a rotation by 0, a shift of 0); every other transform moves every image.
    assert moved.float().mean() > (0.3 if name in ("xflip", "rotate90", "xint", "lumaflip") else 0.99), name


def test_adas_exact_transforms_do_what_they_say():
    """x-flip mirrors, rot90 turns by a multiple of 90 degrees, integer translation moves whole pixels
    (reflected at the borders: no new values), each exactly; brightness adds one number per image, contrast
    multiplies by one, saturation and hue keep the luma (the mean of R, G, B) and hue the chroma's length."""
    torch.manual_seed(0)
    x = images(48)
    close = lambda a, b: (a - b).abs().amax() < 1e-5  # noqa: E731
    flipped = geometric(x, 1.0, transforms={"xflip"})
    assert all(close(f, a) or close(f, a.flip(-1)) for f, a in zip(flipped, x))
    turned = geometric(x, 1.0, transforms={"rotate90"})
    assert all(any(close(t, a.rot90(k, (-2, -1))) for k in range(4)) for t, a in zip(turned, x))
    shifted_ = geometric(x, 1.0, transforms={"xint"})
    for out, a in zip(shifted_, x):  # every output value is one of the image's own, channel by channel
        gaps = (out.flatten(1)[:, :, None] - a.flatten(1)[:, None, :]).abs().amin(-1)
        assert gaps.amax() < 1e-5
    bright = colour(x, 1.0, transforms={"brightness"}) - x
    assert torch.allclose(bright, bright[:, :1, :1, :1].expand_as(bright), atol=1e-6)
    ratio = colour(x, 1.0, transforms={"contrast"}) / x
    assert torch.allclose(ratio, ratio[:, :1, :1, :1].expand_as(ratio), atol=1e-4)
    for name in ("saturation", "hue"):
        out = colour(x, 1.0, transforms={name})
        assert torch.allclose(out.mean(1), x.mean(1), atol=1e-5), name
    hued = colour(x, 1.0, transforms={"hue"})
    chroma = lambda a: (a - a.mean(1, keepdim=True)).norm(dim=1)  # noqa: E731
    assert torch.allclose(chroma(hued), chroma(x), atol=1e-5)


def test_ada_brightness_has_the_papers_spread_on_images_in_minus_1_1():
    """ADA's colour transforms on a mid-grey image (0): contrast (about mid-grey), hue and saturation keep it
    grey at 0 or its sign; what moves it is brightness, N(0, 0.2) in [-1, 1] units, scaled by the contrast."""
    torch.manual_seed(0)
    out = colour(torch.zeros(4000, 3, 4, 4), 1.0)
    assert torch.allclose(out, out[:, :1, :1, :1].expand_as(out), atol=1e-5)  # still grey, flat
    spread = out[:, 0, 0, 0].abs().median().item()
    assert 0.10 < spread < 0.17, spread  # |N(0, 0.2)| has median 0.135 (with std 0.4: 0.27)


def test_a_checkpoint_samples_and_exports_the_same_whatever_augment_was(tmp_path):
    """Sampling and export read the generator alone: the same weights under augment=ada or none give
    byte-identical images and exported weights."""
    from sngan.inference import export_generator, load_generator
    from sngan.sample import sample

    run_training(tmp_path / "run", TINY + FAST_ADA + ["train.steps=2"])
    with_ada = ckpt.find_latest(tmp_path / "run")
    state = ckpt.load(with_ada)
    assert state["augment"]["p"].item() > 0 and state["config"]["augment"]["name"] == "ada"
    state["augment"], state["config"]["augment"] = None, {"name": "none"}
    without = tmp_path / "none.pt"
    torch.save(state, without)
    files, weights = {}, {}
    for name, path in (("ada", with_ada), ("none", without)):
        found = sample(sample_cfg(ckpt=str(path), n=4, out=str(tmp_path / f"png_{name}"), device="cpu"))
        files[name] = [f.read_bytes() for f in sorted(found)]
        exported, _ = export_generator(path, tmp_path / f"g_{name}.safetensors")
        weights[name] = load_generator(exported).state_dict()  # the file's header names its checkpoint
    assert len(files["ada"]) == 4 and files["ada"] == files["none"]
    assert weights["ada"].keys() == weights["none"].keys()
    assert all(torch.equal(weights["ada"][k], weights["none"][k]) for k in weights["ada"])


# ---------------------------------------------------------------- dataset.limit: the small-data experiments


def test_dataset_limit_trains_on_a_fixed_subset_and_scores_against_the_whole_split(tmp_path, monkeypatch):
    """10% of CIFAR-10 is dataset.limit=5000: the same images whatever the run's seed, the labels with them;
    the FID reference keeps the whole split (what small-data papers compare with)."""
    from sngan.cli import start as train_command  # where the train command makes its scorer
    from sngan.data import load_images

    data = load_images("synthetic", "data", 32, synthetic_size=200)
    a, b = data.subset(50, 0), data.subset(50, 0)
    assert len(a.images) == 50 and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    kept = [i for i in range(200) if any(torch.equal(data.images[i], img) for img in a.images[:3])]
    assert len(kept) >= 3 and torch.equal(data.labels[kept[0]], a.labels[0])
    with pytest.raises(Exception, match=r"dataset.limit=300 asks for more images than the split holds \(200\)"):
        data.subset(300, 0)
    with pytest.raises(ConfigError, match=r"dataset\.limit"):
        validated(compose_cfg(TINY + ["dataset.limit=0"]))

    seen = []
    real = train_command.make_scorer
    monkeypatch.setattr(
        train_command, "make_scorer", lambda *args, **kw: seen.append(len(args[4])) or real(*args, **kw)
    )
    for seed in (0, 1):
        run_training(tmp_path / f"s{seed}", TINY + ["dataset.limit=50", "train.steps=2", f"seed={seed}"])
        state = ckpt.load(ckpt.find_latest(tmp_path / f"s{seed}"))
        assert len(state["sampler"]["perm"]) == 50  # the sampler draws from the subset alone
    assert seen == [200, 200]  # the scorer was given the whole split


@pytest.mark.slow
def test_the_demo_script_measures_r_t_on_the_training_and_held_out_photographs(tmp_path):
    """scripts/augment_demo.py end to end on a tiny zip laid out as the CIFAR-10 JPEG one: both runs,
    D's r_t on the photographs it trained on and on others never seen, at every saved step."""
    import csv
    import io
    import json
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    from PIL import Image

    archive, colours = tmp_path / "cifar.zip", torch.Generator().manual_seed(0)
    with zipfile.ZipFile(archive, "w") as z:
        for k, cls in enumerate(["cat", "dog"]):
            for i in range(8):  # 4 to train on, 4 held out, of each class
                pixels = (torch.rand(32, 32, 3, generator=colours) * 60 + 100 * k).to(torch.uint8).numpy()
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, "JPEG")
                z.writestr(f"train/{cls}/{i:04d}.jpg", buffer.getvalue())
    script = Path(__file__).resolve().parents[1] / "scripts" / "augment_demo.py"
    out = tmp_path / "demo"
    args = [sys.executable, str(script), "--zip", str(archive), "--out", str(out), "--images", "8", "--held-out", "8",
            "--steps", "4", "--check-every", "2", "--log-every", "1", "--width", "0.125", "--n-dis", "1",
            "--batch-d", "4", "--batch-g", "4", "--threads", "1", "--jobs", "2"]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    trained = sorted(p.relative_to(out / "data").as_posix() for p in (out / "data").rglob("*.jpg"))
    held = sorted(p.relative_to(out / "heldout").as_posix() for p in (out / "heldout").rglob("*.jpg"))
    assert trained == [f"{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(4)]
    assert held == [f"{c}/{i:04d}.jpg" for c in ("cat", "dog") for i in range(4, 8)]  # never the trained ones
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    for run in ("none", "ada"):
        for tag in ("heldout/rt_train", "heldout/rt_heldout"):
            points = [(int(r["step"]), float(r["value"])) for r in rows if r["run"] == run and r["tag"] == tag]
            assert [s for s, _ in points] == [2, 4], (run, tag)
            assert all(v in {x / 8 for x in range(-8, 9)} for _, v in points)  # a mean of 8 signs
        assert [int(r["step"]) for r in rows if r["run"] == run and r["tag"] == "augment/rt"]
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [line["run"] for line in lines] == ["none", "ada"] and all(line["steps"] == 4 for line in lines)
    with Image.open(out / "curves.png") as plot:
        assert plot.size == (720, 620)  # matplotlib's 7.2 x 6.2 inches at 100 dpi
    # --resume continues both runs from their last checkpoint, and the curves cover the whole of each.
    longer = [*args, "--resume"]
    longer[args.index("--steps") + 1] = "6"
    done = subprocess.run(longer, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    for run in ("none", "ada"):
        assert [int(r["step"]) for r in rows if r["run"] == run and r["tag"] == "heldout/rt_train"] == [2, 4, 6]
        assert [int(r["step"]) for r in rows if r["run"] == run and r["tag"] == "augment/rt"] == list(range(1, 7))
        assert "Resumed from" in (out / run / "train.log").read_text()
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [(line["from_step"], line["steps"]) for line in lines] == [(0, 4), (0, 4), (4, 6), (4, 6)]
    # --resume again with one run done and the other gone: the first is measured again, the second trained.
    shutil.rmtree(out / "ada")
    done = subprocess.run(longer, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()][4:]
    assert [(line["run"], line["from_step"], line["seconds"] is None) for line in lines] == [
        ("none", 6, True), ("ada", 0, False)]  # fmt: skip
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    for run in ("none", "ada"):
        assert [int(r["step"]) for r in rows if r["run"] == run and r["tag"] == "heldout/rt_train"] == [2, 4, 6]


@pytest.mark.parametrize("name", ["diffaugment", "ada"])
def test_augmentation_under_bf16_autocast_runs_in_fp32_and_returns_the_input_dtype(name):
    """speed.precision=bf16 runs the networks under autocast; the transforms between them (ADA's colour
    matrices and resampling grid, DiffAugment's shifts) still compute in fp32, as without autocast, and hand
    D the dtype they were given (G's output under autocast: bf16)."""
    aug, x = Augment(name, torch.device("cpu"), 1.0), images(8)

    def augmented(x: torch.Tensor, bf16: bool) -> torch.Tensor:
        torch.manual_seed(3)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return aug(x)

    plain = augmented(x, False)
    under = augmented(x, True)
    assert under.dtype == torch.float32 and torch.equal(under, plain), name
    from_bf16 = augmented(x.bfloat16(), True)
    assert from_bf16.dtype == torch.bfloat16 and torch.equal(
        from_bf16, augmented(x.bfloat16().float(), False).bfloat16()
    )
