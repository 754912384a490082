"""The run report, and a real TensorBoard server serving a short run's tags and images."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from helpers import TINY, run_training
from PIL import Image

from sngan.report import group, read_scalars, write_report


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("report_run")
    run_training(run_dir, TINY + ["train.steps=4", "train.monitor_every=2", "train.ema_decay=0.9"])
    return run_dir


def test_report_has_a_titled_panel_for_every_group_and_the_series_of_the_event_files(short_run):
    paths = write_report(short_run)
    assert Image.open(paths["png"]).size[0] > 500
    doc = json.loads(paths["json"].read_text())
    events = read_scalars(short_run)
    panels = doc["panels"]
    titles = [
        "losses", "mean D output on real and fake", "gradient norms",
        "spectral norm of each layer (exact, reshaped weight)", "operator norm of each normalized convolution",
        "Lipschitz estimate of D (product of layer norms)", "synthetic data: quality and mode coverage",
    ]  # fmt: skip
    for title in titles:
        assert title in panels, title
        assert title in paths["html"].read_text()
    plotted = {tag: data for tags in panels.values() for tag, data in tags.items()}
    assert set(plotted) == set(events)  # every logged tag is in some panel
    for tag, data in events.items():
        assert plotted[tag]["steps"] == data["steps"] and plotted[tag]["values"] == data["values"], tag
    assert plotted["loss/d"]["steps"] == [1, 2, 3, 4]
    assert group({"x/unknown": {"steps": [1], "values": [0.0]}}) == {
        "other": {"x/unknown": {"steps": [1], "values": [0.0]}}
    }


def test_report_command_line(short_run, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sngan.report", str(short_run), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "report.png").is_file() and (tmp_path / "report.html").is_file()
    bad = subprocess.run([sys.executable, "-m", "sngan.report", str(tmp_path / "nope")], capture_output=True, text=True)
    assert bad.returncode == 2 and "nope' does not exist" in bad.stderr and "Traceback" not in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_a_real_tensorboard_server_serves_the_runs_tags_and_images(short_run):
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(short_run / "tb"), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}/data/plugin"
        deadline, tags = time.monotonic() + 90, {}
        while time.monotonic() < deadline:
            try:
                scalars = _get(f"{base}/scalars/tags")
                tags = {t for run in scalars.values() for t in run}
                if "loss/d" in tags and any(t.startswith("sigma/") for t in tags):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert {"loss/d", "loss/g", "synthetic/quality", "lipschitz/bound", "grad_norm/d"} <= tags
        assert "sigma/body.0/exact" in tags and "sigma/body.0/operator" in tags
        images = {t for run in _get(f"{base}/images/tags").values() for t in run}
        assert {"samples/fixed_z", "samples/fixed_z_ema", "data/real"} <= images
        histograms = {t for run in _get(f"{base}/histograms/tags").values() for t in run}
        assert {"d_out_hist/real", "d_out_hist/fake"} <= histograms
        layout = json.dumps(_get(f"{base}/custom_scalars/layout"))
        assert all(group in layout for group in ("losses", "D outputs", "spectral norms", "metrics"))
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_ablation_multirun_and_its_table(tmp_path, with_inception, train_cli):
    """The SN ablation with a (tiny) metric rule on, one seed of the experiment's three: a run with SN and one
    without, and a table with recall and coverage beside the synthetic modes."""
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        sweep_cfg = compose("train", ["experiment=ablation_sn"], return_hydra_config=True).hydra
    assert sweep_cfg.mode.name == "MULTIRUN"
    assert dict(sweep_cfg.sweeper.params) == {"constraint": "sn,none", "seed": "0,1,2"}
    tiny = ["model.width=0.125", "train.steps=2", "train.eval_every=2", "train.eval_samples=50", "dataset.size=100",
            "train.batch_size_d=8", "train.batch_size_g=8", "train.grid_size=4", "train.monitor_every=1",
            "metrics=fid_paper", "metrics.name=tiny", "metrics.n_fake=32", "metrics.n_real=100", "metrics.is_splits=2",
            "metrics.is_split_size=16", "metrics.kid_subsets=5", "metrics.kid_subset_size=20", "inception.dims=64",
            "hydra.sweeper.params.seed=1"]  # fmt: skip
    sweep = tmp_path / "sweep"
    done = train_cli("experiment=ablation_sn", *tiny, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    table = subprocess.run([sys.executable, "-m", "sngan.report", str(sweep)], capture_output=True, text=True)
    assert table.returncode == 0, table.stderr
    rows = json.loads((sweep / "ablation.json").read_text())
    # One value is no longer a swept one, so a row names SN alone.
    assert sorted(r["overrides"].lower() for r in rows) == ["constraint=none", "constraint=sn"]
    assert all(r["final_step"] == 2 and 0 <= r["quality"] <= 1 and isinstance(r["diverged"], bool) for r in rows)
    assert all(r["rule"] == "tiny" and 0 <= r["recall"] <= 1 and 0 <= r["coverage"] <= 1 for r in rows)
    assert "| modes covered |" in (sweep / "ablation.md").read_text()
    assert "| recall (tiny) | coverage (tiny) |" in table.stdout
    assert "| constraint=none |" in table.stdout


def test_the_sweep_table_adds_recall_and_coverage_where_a_metric_rule_was_on(tmp_path):
    """Beside the synthetic modes: G's recall and coverage at the last evaluation (not the EMA's), "-" for a run
    without them."""
    from sngan.report import sweep_table

    finals = {
        "0": {"step": 4, "synthetic/quality": 0.9, "synthetic/modes_covered": 9, "tiny/recall": 0.75,
              "tiny/coverage": 0.625, "ema/tiny/recall": 0.5, "ema/tiny/coverage": 0.5},
        "1": {"step": 4, "synthetic/quality": 0.8, "synthetic/modes_covered": 3, "tiny/recall": 0.125,
              "tiny/coverage": 0.25},
        "2": {"step": 4, "synthetic/quality": 0.8, "synthetic/modes_covered": 3},
    }  # fmt: skip
    for name, final in finals.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(json.dumps(final) + "\n")
        (tmp_path / name / "config.yaml").write_text("train:\n  steps: 4\n")
    rows, md, _ = sweep_table(tmp_path)
    assert [(r.get("recall"), r.get("coverage")) for r in rows] == [(0.75, 0.625), (0.125, 0.25), (None, None)]
    lines = md.read_text().splitlines()
    assert lines[0].endswith("| diverged | recall (tiny) | coverage (tiny) |") and lines[1].count("---") == 9
    assert lines[2].endswith("| 0.750 | 0.625 |") and lines[4].endswith("| - | - |")
