"""docs/design.md's "Add a dataset", "Add a metric", "Add a model" and "Add a D regularizer", walked through as
a user would: one module of one's own (``toy_plugin.py``, outside the package) registers a toy dataset, a toy
measure, a toy model and a toy penalty on D's weights; one YAML file each (in a folder of one's own, given by
``hydra.searchpath``) makes them config choices; ``imports=[toy_plugin]`` has the commands import the module.
``python -m sngan.train`` trains on them and ``python -m sngan.evaluate`` scores the run's checkpoints under
the toy rule, in fresh processes (nothing is registered in the test process; tests/small_inception.py starts
them, the Inception network reading 75x75 images: evaluate's numbers are compared with the run's own)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import SMALL_INCEPTION
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

PLUGIN = '''
"""A dataset, a measure and a model of one's own (docs/design.md)."""
import numpy as np
import torch
from torch import nn

from sngan.data import DATASETS, ImageData, Source
from sngan.metrics import MEASURES, Measure
from sngan.models import MODELS, Architecture
from sngan.models.constraints import CONSTRAINTS, Constraint


def load_toy(dataset, split):
    """dataset.size random images of two classes, the second brighter: decoded into uint8 [N, 3, 32, 32]."""
    gen = torch.Generator().manual_seed(dataset.seed)
    labels = torch.arange(dataset.size) % 2
    images = torch.rand(dataset.size, 3, 32, 32, generator=gen) * 127 + 128 * labels.view(-1, 1, 1, 1)
    return ImageData(images.to(torch.uint8), labels=labels, classes=["dark", "bright"])


DATASETS.register("toy")(Source(load_toy, resolution=32))


def feature_norm(features, logits, reference, rule, device):
    """The mean length of the generated images' Inception features, and the reals' (from their mean)."""
    return {"feature_norm": float(np.linalg.norm(features[: rule.n_fake], axis=1).mean()),
            "real_mean_norm": float(np.linalg.norm(reference.mu))}


MEASURES.register("feature_norm")(Measure(feature_norm))


class ToyG(nn.Module):
    """A linear map of z to a 4x4 image, upsampled to 32x32, in [-1, 1]."""

    def __init__(self, z_dim):
        super().__init__()
        self.z_dim = z_dim  # what every generator tells its samplers
        self.net = nn.Sequential(nn.Linear(z_dim, 48), nn.Unflatten(1, (3, 4, 4)), nn.Upsample(scale_factor=8))

    def forward(self, z):
        return torch.tanh(self.net(z))


def build_toy(z_dim, width, norm=None):
    """G above; D: two convolutions and a linear layer (the constraint group adds SN)."""
    g = ToyG(z_dim)
    d = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 4, 4), nn.LeakyReLU(0.1),
                      nn.Flatten(), nn.Linear(8 * 2 * 2, 1))
    return g, d


MODELS.register("toy")(Architecture(resolution=32, build=build_toy, lipschitz_chain=True))


def squared_weights(d):
    """The sum of D's squared weights (weight decay as a term of D's loss)."""
    return sum(m.weight.square().sum() for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


CONSTRAINTS.register("l2")(Constraint(constants=("weight",), penalty=squared_weights, weighted_by="weight"))
'''

YAML = {
    "dataset/toy.yaml": "defaults:\n  - /dataset_common@_here_\n  - _self_\n\nname: toy\nroot: ''\nsize: 60\nseed: 3\n",
    "metrics/toy_rule.yaml": (
        "defaults:\n  - fid_paper\n  - _self_\n\nname: toy_rule\nn_fake: 20\nn_real: 30\nis_split_size: 10\n"
        "is_splits: 2\nkid_subsets: 2\nkid_subset_size: 10\nprdc_n: 0\nmeasures: [fid, feature_norm]\n"
    ),
    "constraint/l2.yaml": (
        "name: l2\nspectral_norm: false\nclip: null\ngp_weight: null\northo_weight: null\nweight: 0.01\n"
    ),
    "model/toy.yaml": (
        "name: toy\nz_dim: 8\nwidth: 1.0\nspectral_norm: ${constraint.spectral_norm}\nconditional: false\n"
    ),
}


def sngan(command: str, overrides: list[str], home: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(home), *sys.path])}  # toy_plugin, and sngan itself
    return subprocess.run(
        [*SMALL_INCEPTION, f"sngan.{command}", *overrides], cwd=home, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_a_dataset_a_measure_and_a_model_of_ones_own_train_and_evaluate(tmp_path, with_inception):
    (tmp_path / "toy_plugin.py").write_text(PLUGIN)
    for name, text in YAML.items():
        (tmp_path / "configs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "configs" / name).write_text(text)
    own = ["imports=[toy_plugin]", f"hydra.searchpath=[file://{tmp_path / 'configs'}]", "inception.dims=64"]
    run = tmp_path / "run"
    train = sngan("train", [*own, "experiment=quickstart", "model=toy", "dataset=toy", "metrics=toy_rule",
                            "train.steps=2", "train.eval_every=2", "train.checkpoint_every=2", "train.sample_every=2",
                            "train.batch_size_d=8", "train.batch_size_g=8", "train.grid_size=4",
                            "train.monitor_every=1", "constraint=l2", f"hydra.run.dir={run}"], tmp_path)  # fmt: skip
    assert train.returncode == 0, train.stderr
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("toy_rule/fid", "toy_rule/feature_norm", "ema/toy_rule/feature_norm"):
        assert last[key] > 0, last  # the toy measure, of G and of its EMA, beside FID
    assert "toy_rule/is_mean" not in last and "toy_rule/kid_mean" not in last  # only the rule's measures
    assert last["toy_rule/real_mean_norm"] > 0
    # The penalty joined D's loss, weighted by constraint.weight: 0.01 x the sum of D's squared weights.
    logged = EventAccumulator(str(run / "tb"))
    logged.Reload()
    penalty = [event.value for event in logged.Scalars("penalty/d")]
    assert penalty and all(0 < value < 1 for value in penalty), penalty  # logged at the last step
    # Evaluate: its own imports= names the rule's measure; the run's dataset and model come through them too.
    evaluate = sngan("evaluate", [*own, f"ckpt={run}", "metrics=toy_rule", "batch_size=10", "device=cpu"], tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "feature_norm=" in evaluate.stderr  # the printed rows show the measure of one's own
    table = json.loads((run / "eval_toy_rule.json").read_text())
    assert table["rule"] == "toy_rule" and table["measures"] == ["fid", "feature_norm"] and "kid" not in table
    rows = {row["network"]: row for row in table["results"]}
    assert set(rows) == {"g", "ema"}
    # The same seed and weights: evaluate reproduces the numbers the run logged at the same step.
    assert rows["ema"]["feature_norm"] == pytest.approx(last["ema/toy_rule/feature_norm"], rel=1e-6)
    assert rows["g"]["fid"] == pytest.approx(last["toy_rule/fid"], rel=1e-6)
    # The checkpoint stores imports=[toy_plugin]: sample builds the toy generator without being told.
    sample = sngan("sample", [f"ckpt={run}/checkpoints/ckpt_00000002.pt", "n=2", f"out={tmp_path / 'png'}"], tmp_path)
    assert sample.returncode == 0, sample.stderr
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == ["000000.png", "000001.png"]


def test_a_module_of_imports_that_cannot_be_imported_or_an_unknown_measure_is_one_paragraph_naming_it():
    from helpers import compose_cfg, validated

    from sngan.config import ConfigError

    with pytest.raises(ConfigError, match=r"imports=\[no_such_plugin\]: the module cannot be imported \(Module"):
        validated(compose_cfg(["experiment=quickstart", "imports=[no_such_plugin]"]))
    with pytest.raises(ConfigError, match=r"metrics.measures=\['fid', 'nope'\].*list one or more of: fid, is, kid"):
        validated(compose_cfg(["experiment=quickstart", "metrics=fid_paper", "metrics.measures=[fid,nope]"]))
    from hydra import compose, initialize_config_module

    from sngan.cli.command_settings import check_evaluate

    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name="evaluate", overrides=["images=x.npz", "dataset=cifar10", "dataset.name=toy"])
    with pytest.raises(ConfigError, match=r"dataset.name='toy'.*choose one of: cifar10, cifar100, folder"):
        check_evaluate(raw)  # a dataset nothing registered (no imports=): said, not a traceback
