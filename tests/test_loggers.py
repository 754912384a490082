"""logger=wandb and logger=mlflow, offline: W&B's offline run files and MLflow's file store are read back
after a short run and after its resume, which continues the same tracker run (its id in the checkpoint)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from helpers import THREADS, TINY, compose_cfg

from sngan.cli.errors import run_or_exit
from sngan.cli.settings import check_train
from sngan.cli.start import start
from sngan.config import ConfigError, to_container
from sngan.utils import checkpoint as ckpt

RUN = TINY + ["train.steps=4", "train.monitor_every=2", "train.sample_every=2"]


def train(run_dir: Path, overrides: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    raw = compose_cfg(overrides)
    torch.set_num_threads(THREADS)
    try:
        run_or_exit(lambda: start(check_train(raw), to_container(raw), run_dir))
    except SystemExit as stop:
        return int(stop.code), capsys.readouterr().err
    return 0, capsys.readouterr().err


def tracker_run(run_dir: Path) -> dict[str, str]:
    return ckpt.load(ckpt.find_latest(run_dir))["tracker_run"]


# ---------------------------------------------------------------- W&B


def wandb_records(path: Path) -> list[object]:
    """The records of a W&B run file (run-<id>.wandb): a LevelDB-style log of 32 KiB blocks after a 7-byte
    header, each record a 7-byte header (CRC-32, length, type: 1 full, 2 first, 3 middle, 4 last) and a
    protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2

    raw, block, pos, pieces, records = path.read_bytes(), 32768, 7, b"", []
    assert raw[:4] == b":W&B"
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if kind == 0:
            break
        pieces += raw[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            records.append(record)
            pieces = b""
    return records


def wandb_history(run_dir: Path, run_id: str) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Every history row logged to W&B run ``run_id`` from ``run_dir`` (all its offline sessions), and the
    config of its last session."""
    rows, config = [], {}
    for path in sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "history":
                rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                             for item in record.history.item})  # fmt: skip
            elif kind == "run":
                config = {item.key: json.loads(item.value_json) for item in record.run.config.update}
    return rows, config


@pytest.mark.slow
def test_wandb_offline_gets_scalars_grids_histograms_config_and_a_resume_continues_its_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    code, err = train(run_dir, RUN + ["logger=wandb", "logger.mode=offline", "logger.tags=[smoke]"], capsys)
    assert code == 0, err
    ids = tracker_run(run_dir)
    assert ids["logger"] == "wandb" and ids["id"]
    rows, config = wandb_history(run_dir, ids["id"])
    assert config["seed"] == 0 and config["train"]["steps"] == 4
    losses = [row["train/step"] for row in rows if "loss/d" in row]
    assert losses == [1, 2, 3, 4]  # train.log_every=1
    grids = [row for row in rows if row.get("samples/fixed_z/_type") == "image-file"]
    assert [row["train/step"] for row in grids] == [2, 4]
    assert all((run_dir / "wandb").glob(f"offline-run-*/files/{row['samples/fixed_z/path']}") for row in grids)
    assert any(row.get("d_out_hist/real/_type") == "histogram" for row in rows)  # the monitor's histograms
    assert any("synthetic/quality" in row for row in rows)  # the evaluations
    assert "offline-run-" in err  # W&B says where its files are (and, online, the run's page)

    code, err = train(run_dir, RUN + ["train.steps=6", "resume=auto", "logger=wandb", "logger.mode=offline"], capsys)
    assert code == 0, err
    assert tracker_run(run_dir) == ids  # the same W&B run
    rows, _ = wandb_history(run_dir, ids["id"])
    assert [row["train/step"] for row in rows if "loss/d" in row] == [1, 2, 3, 4, 5, 6]


# ---------------------------------------------------------------- MLflow


@pytest.mark.slow
def test_mlflow_file_store_gets_metrics_images_params_and_a_resume_continues_its_run(tmp_path, capsys, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    uri = f"file:{tmp_path / 'mlruns'}"
    run_dir, logger = tmp_path / "run", ["logger=mlflow", f"logger.tracking_uri={uri}", "logger.project=tests"]
    code, err = train(run_dir, RUN + logger, capsys)
    assert code == 0, err
    ids = tracker_run(run_dir)
    assert ids["logger"] == "mlflow"
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(ids["id"])
    assert run.info.status == "FINISHED" and client.get_experiment(run.info.experiment_id).name == "tests"
    assert run.data.params["seed"] == "0" and run.data.params["train.steps"] == "4"
    assert [(m.step, m.value) for m in client.get_metric_history(ids["id"], "loss/d")][0][0] == 1
    assert [m.step for m in client.get_metric_history(ids["id"], "ema/synthetic/quality")] == [2, 4]
    artifacts = {a.path for a in client.list_artifacts(ids["id"])}
    assert "config.yaml" in artifacts and "images" in artifacts  # the grids, as step images

    code, err = train(run_dir, RUN + logger + ["train.steps=6", "resume=auto"], capsys)
    assert code == 0, err
    assert tracker_run(run_dir) == ids
    assert [m.step for m in client.get_metric_history(ids["id"], "loss/d")] == [1, 2, 3, 4, 5, 6]
    assert client.get_run(ids["id"]).info.status == "FINISHED"


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("logger", ["wandb", "mlflow"])
def test_a_logger_whose_package_is_missing_is_one_paragraph_naming_the_install(tmp_path, capsys, monkeypatch, logger):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == logger else real(name, *a))
    code, err = train(tmp_path / "run", RUN + [f"logger={logger}"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f'pip install -e ".[{logger}]"' in errors[0] and "logger=tensorboard" in errors[0]
    assert not (tmp_path / "run" / "checkpoints").exists() and not (tmp_path / "run" / "tb").exists()


def test_a_wandb_mode_that_does_not_exist_lists_the_modes(tmp_path, capsys):
    code, err = train(tmp_path / "run", RUN + ["logger=wandb", "logger.mode=cloud"], capsys)
    assert code == 2 and "logger.mode" in err and "online, offline, disabled" in err


def test_an_mlflow_store_that_cannot_be_opened_is_one_paragraph(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # MLflow 3 refuses its file store without it
    uri = f"file:{tmp_path / 'mlruns'}"
    code, err = train(tmp_path / "run", RUN + ["logger=mlflow", f"logger.tracking_uri={uri}"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert f"tracking URI {uri}" in errors[0] and "logger.tracking_uri" in errors[0]
    assert ckpt.find_latest(tmp_path / "run") is None


# ---------------------------------------------------------------- start-up failures (issue 36)


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch) -> None:
    """No W&B credentials anywhere W&B looks (the key's variable, a .netrc, its settings folder) and no
    $WANDB_MODE, whatever the machine running the tests has."""
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))


def logger_settings(overrides: list[str]):
    return check_train(compose_cfg(RUN + overrides)).logger


def test_wandb_mode_follows_wandb_mode_in_the_environment_unless_logger_mode_is_set(
    tmp_path, monkeypatch, no_wandb_login
):
    """W&B's own rule: $WANDB_MODE decides unless the mode is given explicitly (the config's mode used to be
    `online` always, so WANDB_MODE=offline without an API key ended in UsageError's traceback)."""
    from sngan.training.trackers import open_mirror

    monkeypatch.setenv("WANDB_MODE", "offline")
    settings = logger_settings(["logger=wandb"])
    assert settings.mode is None  # sngan/configs/logger_common.yaml: null, W&B's own choice
    mirror = open_mirror(settings, "env", {"seed": 0}, tmp_path / "run", None)
    assert mirror is not None and mirror.run.settings.mode == "offline"
    mirror.close(True)
    assert list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{mirror.run_id}"))
    with pytest.raises(ConfigError) as refused:  # an explicit logger.mode wins over $WANDB_MODE
        open_mirror(logger_settings(["logger=wandb", "logger.mode=online"]), "x", {}, tmp_path / "run2", None)
    message = str(refused.value)
    assert "in online mode (logger.mode): UsageError: No API key configured." in message, message
    for advice in ("set WANDB_MODE=offline", "`wandb login`", "logger=tensorboard"):
        assert advice in message, message
    assert "\n" not in message


def test_a_wandb_run_that_cannot_start_stops_training_with_one_paragraph(tmp_path, capsys, no_wandb_login):
    code, err = train(tmp_path / "run", RUN + ["logger=wandb", "logger.mode=online"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err, err
    assert "No API key configured" in errors[0] and "WANDB_MODE=offline" in errors[0] and "wandb login" in errors[0]


def test_mlflow_refusing_its_file_store_names_the_switch_and_is_never_cut_mid_sentence(tmp_path, monkeypatch):
    """mlflow-skinny 3 refuses file: URIs without MLFLOW_ALLOW_FILE_STORE=true (its message names it near
    its end, past the 300 characters the error used to keep: "... See htt)")."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from sngan.training.trackers import open_mirror

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = f"file:{tmp_path / 'mlruns'}"
    with pytest.raises(MlflowException, match="set `MLFLOW_ALLOW_FILE_STORE=true`") as raw:
        MlflowClient(tracking_uri=uri)  # what the installed MLflow says, and what the message is built on
    assert str(raw.value).find("MLFLOW_ALLOW_FILE_STORE") > 300
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the way: the environment, no logger.tracking_uri
    with pytest.raises(ConfigError) as refused:
        open_mirror(logger_settings(["logger=mlflow"]), "x", {}, tmp_path / "run", None)
    message = str(refused.value)
    assert f"tracking URI {uri}:" in message and "Set MLFLOW_ALLOW_FILE_STORE=true" in message, message
    assert "sqlite:///mlflow.db" in message and "logger.tracking_uri" in message and "logger=tensorboard" in message
    assert message.endswith("logger=tensorboard.") and "htt)" not in message


def test_tracker_errors_keep_whole_sentences():
    from sngan.training.trackers import whole_sentences

    long = "First sentence here. " + "Second sentence, long, " * 20 + "ending at https://example.org/x here."
    assert whole_sentences(long) == "First sentence here."  # the second ends past 300 characters
    one = "One sentence " + "going on " * 60 + "to https://example.org/docs."
    assert whole_sentences(one + "\nSecond line.") == one  # longer than 300 but one sentence: kept whole
    assert whole_sentences("No full stop") == "No full stop."
