"""Files written before the layout change (issue 23) still work: a checkpoint and an export written by
main at commit cb20605, kept in tests/fixtures/legacy_cb20605, made with

    python -m sngan.train experiment=quickstart model.width=0.0625 train.steps=2 train.batch_size_d=8 \
        train.batch_size_g=8 train.grid_size=4 dataset.size=64 train.eval_every=2 train.eval_samples=64 \
        train.checkpoint_every=2 train.sample_every=2 run_name=legacy hydra.run.dir=run
    python -m sngan.export ckpt=run/checkpoints/ckpt_00000002.pt out=gen.safetensors

and ``expected.pt``: four images the exported generator drew from four saved latents."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from sngan import load_generator
from sngan.config import ConfigError
from sngan.inference import generate
from sngan.utils import checkpoint as ckpt
from tests.helpers import run_training

LEGACY = Path(__file__).parent / "fixtures" / "legacy_cb20605"
OVERRIDES = [
    "experiment=quickstart", "model.width=0.0625", "train.batch_size_d=8", "train.batch_size_g=8",
    "train.grid_size=4", "dataset.size=64", "train.eval_every=2", "train.eval_samples=64",
    "train.checkpoint_every=2", "train.sample_every=2", "run_name=legacy",
]  # fmt: skip


def test_an_export_and_a_checkpoint_from_before_draw_the_same_images_as_then():
    expected = torch.load(LEGACY / "expected.pt", weights_only=True)
    for path in (LEGACY / "gen.safetensors", LEGACY / "ckpt_00000002.pt"):
        images = generate(load_generator(path), expected["z"])
        assert images.shape == (4, 3, 32, 32)
        torch.testing.assert_close(images, expected["images"], atol=1e-5, rtol=0, msg=str(path))


def test_a_checkpoint_from_before_resumes_and_trains_on(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(LEGACY / "ckpt_00000002.pt", run_dir / "checkpoints")
    run_training(run_dir, OVERRIDES + ["train.steps=4", "resume=auto"])
    old, new = ckpt.load(run_dir / "checkpoints" / "ckpt_00000002.pt"), ckpt.load(ckpt.checkpoint_path(run_dir, 4))
    assert new["step"] == 4
    assert old["generator"].keys() == new["generator"].keys()
    assert any(not torch.equal(old["generator"][k], new["generator"][k]) for k in old["generator"])


def test_a_checkpoint_from_before_has_its_stored_settings_completed_for_evaluate():
    """cb20605 stored only the keys its config files had (a synthetic run: no dataset.split or cache);
    evaluate validates the stored settings with today's files filling in the rest."""
    from sngan.cli.settings import check_stored

    stored = ckpt.load(LEGACY / "ckpt_00000002.pt")["config"]
    assert "split" not in stored["dataset"]
    cfg = check_stored(stored)
    assert (cfg.dataset.name, cfg.dataset.split, cfg.model.width, cfg.train.steps) == ("synthetic", "train", 0.0625, 2)


@pytest.mark.parametrize("group,name", [("dataset", "imagenet_tiny"), ("loss", "relativistic")])
def test_a_checkpoint_of_a_dataset_or_loss_this_version_lacks_is_refused_naming_the_version_that_wrote_it(group, name):
    """evaluate reads the run's settings from the checkpoint; one whose dataset or loss has since been removed
    gets a ConfigError that names the choices and the writing version, not Hydra's composition error."""
    from sngan.cli.settings import check_stored

    state = ckpt.load(LEGACY / "ckpt_00000002.pt")
    state["config"][group]["name"] = name
    with pytest.raises(ConfigError, match=rf"{group}={name}.*\(it has: .*\).*sngan 0\.1\.0 at commit cb20605"):
        check_stored(state["config"], state["provenance"])
    with pytest.raises(ConfigError, match=r"version not recorded"):
        check_stored(state["config"])
