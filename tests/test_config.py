from pathlib import Path

import pytest
from helpers import compose_cfg, validated
from hydra.errors import MissingConfigException

from sngan.config import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "sngan" / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def test_groups_hold_the_expected_options():
    assert options("model") == ["cnn32", "cnn48", "resnet32", "resnet48"]
    assert options("dataset") == ["cifar10", "cifar100", "folder", "stl10", "synthetic"]
    assert options("loss") == ["hinge", "nonsaturating", "wasserstein"]
    assert "adam_sngan" in options("optim")
    assert {
        "quickstart",
        "sngan_resnet32_cifar10",
        "sngan_cnn32_cifar10",
        "sngan_resnet48_stl10",
        "sngan_cnn48_stl10",
    } <= set(options("experiment"))


@pytest.mark.parametrize("group", ["model", "loss", "optim"])
def test_every_option_composes_and_validates(group):
    for name in options(group):
        overrides = [f"{group}={name}"]
        if group == "model" and name.endswith("48"):
            overrides.append("dataset=stl10")
        cfg = validated(compose_cfg(overrides))
        assert cfg.model.name and cfg.loss.name


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "stl10", "folder", "synthetic"])
def test_every_dataset_composes_and_validates(name):
    overrides = [f"dataset={name}", f"model={'resnet48' if name == 'stl10' else 'resnet32'}"]
    if name == "folder":
        overrides.append("dataset.root=/some/images")
    cfg = validated(compose_cfg(overrides))
    assert cfg.dataset.name == name and cfg.dataset.resolution == (48 if name == "stl10" else 32)


@pytest.mark.parametrize("name", options("experiment"))
def test_every_experiment_composes_and_validates(name):
    cfg = validated(compose_cfg([f"experiment={name}"]))
    assert cfg.run_name == name


def test_paper_experiments_pin_the_papers_settings():
    cfg = validated(compose_cfg(["experiment=sngan_resnet32_cifar10"]))
    assert (cfg.model.name, cfg.dataset.name, cfg.loss.name) == ("resnet32", "cifar10", "hinge")
    assert (cfg.train.n_dis, cfg.train.batch_size_d, cfg.train.batch_size_g) == (5, 64, 128)
    assert (cfg.optim.lr_g, cfg.optim.lr_d, cfg.optim.beta1, cfg.optim.beta2) == (2e-4, 2e-4, 0.0, 0.9)
    assert cfg.optim.decay == "linear" and cfg.train.steps == 50000
    stl = validated(compose_cfg(["experiment=sngan_resnet48_stl10"]))
    assert stl.dataset.split == "unlabeled" and stl.dataset.resolution == 48


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("train.n_dis=0", r"train\.n_dis=0 .*greater than 0"),
        ("optim.lr_d=0", r"optim\.lr_d=0\.0 .*greater than 0"),
        ("optim.lr_g=-1e-4", r"optim\.lr_g=-0\.0001"),
        ("train.batch_size_d=0", r"train\.batch_size_d=0"),
        ("train.batch_size_g=-3", r"train\.batch_size_g=-3"),
        ("train.steps=abc", r"key 'train\.steps' \(value 'abc'\).*Integer"),
        ("model.width=wide", r"key 'model\.width' \(value 'wide'\)"),
        ("optim.decay=cosine", r"optim\.decay='cosine'.*linear, none"),
        ("optim.beta1=1.5", r"beta1/beta2"),
        ("train.ema_decay=1.0", r"train\.ema_decay=1\.0 .*between 0 and 1"),
        ("train.on_nonfinite=ignore", r"train\.on_nonfinite='ignore'.*stop, skip"),
        ("dataset=stl10", r"model 'resnet32' generates 32x32 images but dataset 'stl10' is 48x48.*resnet48"),
        ("dataset=folder", r"dataset\.root is required"),
        ("dataset.resolution=64", r"is 64x64"),
    ],
)
def test_bad_overrides_give_one_paragraph_errors(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as err:
        validated(compose_cfg([override]))
    assert "\n" not in str(err.value)


def test_unknown_group_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as err:
        compose_cfg(["model=resnet99"])
    assert "resnet99" in str(err.value)
    assert set(err.value.options or []) >= {"cnn32", "resnet32"}


@pytest.mark.slow
def test_cli_reports_errors_and_exits_non_zero(tmp_path, monkeypatch, train_cli):
    """The command line (its Hydra app): a bad value and an unknown option, from another folder."""
    monkeypatch.setenv("HYDRA_FULL_ERROR", "0")
    for override, expected in [("train.n_dis=0", "train.n_dis=0"), ("model=resnet99", "Available options")]:
        proc = train_cli("experiment=quickstart", override, cwd=tmp_path)
        assert proc.returncode != 0
        assert expected in proc.stderr
        assert "Traceback" not in proc.stderr


def test_metric_presets_are_read_from_the_yaml_rules():
    from sngan.config import metric_presets

    presets = metric_presets()
    assert presets == {  # (n_fake, real split, n_real, IS split size, IS splits)
        "fid_paper": (5000, "train", 10000, 5000, 1),  # the authors' training-time IS: one split of 5,000
        "fid_paper_final": (5000, "train", 10000, 5000, 10),  # their final IS: 10 splits of 5,000
        "fid50k_train": (50000, "train", None, 5000, 10),
        "fid10k_test": (10000, "test", 10000, 1000, 10),
        "fid50k_train_clean": (50000, "train", None, 5000, 10),  # fid50k_train's counts, clean-fid's resize
        "fd_dinov2_50k_train": (50000, "train", None, 5000, 10),  # on DINOv2 (no IS: its splits are unused)
    }
    assert options("metrics") == sorted([*presets, "none"])
    for name, counts in presets.items():
        m = validated(compose_cfg([f"metrics={name}"])).metrics
        assert (m.name, m.n_fake, m.real_split, m.n_real, m.is_split_size, m.is_splits) == (name, *counts)
    assert validated(compose_cfg([])).metrics.name == "fid_paper"  # on by default
    assert validated(compose_cfg(["experiment=quickstart"])).metrics.name == "none"  # offline quick start
