"""Issue 36, "five ways to lose a file": evaluate, sample, fid_stats and export never replace a file that is
not theirs to replace (each refusal before the slow work, changing nothing), write every file whole or not
at all, name the file a failed write was writing, and say on Ctrl-C what they had written (exit 130)."""

from __future__ import annotations

import errno
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image
from test_export_overwrite import tiny_checkpoint

import sngan.cli.evaluate_images
import sngan.evaluate
import sngan.metrics.reference
import sngan.metrics.scoring
from sngan.cli.command_settings import check_evaluate, check_fid_stats, check_sample
from sngan.cli.errors import run_or_exit
from sngan.evaluate import evaluate
from sngan.export import stop_report
from sngan.fid_stats import compute
from sngan.models import build_models
from sngan.sample import sample
from sngan.utils import checkpoint as ckpt
from sngan.utils.outputs import stamp, write_atomic

# A tiny rule of our own name (never mistaken for fid_paper): seconds per row on one core.
RULE = [
    "metrics=fid_paper", "metrics.name=tiny", "metrics.n_fake=10", "metrics.n_real=20", "metrics.prdc_n=0",
    "metrics.kid_subsets=2", "metrics.kid_subset_size=8", "metrics.is_splits=2", "metrics.is_split_size=5",
    "inception.dims=64",
]  # fmt: skip
# The dataset the tiny runs name, as images= names it: the same reference statistics file.
DATASET = ["dataset=synthetic", "dataset.size=150", "dataset.resolution=32"]
BODIES = {
    "evaluate": lambda raw: evaluate(check_evaluate(raw)),
    "sample": lambda raw: sample(check_sample(raw)),
    "fid_stats": lambda raw: compute(check_fid_stats(raw)),
}


def tiny_run(folder: Path, steps: tuple[int, ...]) -> Path:
    """A run folder of untrained narrow cnn32 checkpoints on a small synthetic dataset (no training)."""
    model = {"name": "cnn32", "z_dim": 4, "width": 0.125, "conditional": False}
    config = {"model": model, "dataset": {"name": "synthetic", "size": 150, "resolution": 32}, "seed": 0}
    for step in steps:
        torch.manual_seed(step)
        generator, _ = build_models("cnn32", 4, 0.125, False)
        state = {"format_version": ckpt.FORMAT_VERSION, "step": step, "config": config, "ema": None}
        ckpt.save_atomic(state | {"generator": generator.state_dict()}, ckpt.checkpoint_path(folder, step))
    return folder


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("outputs_safety") / "run", (1, 2, 3, 4, 5))


@pytest.fixture(scope="module")
def stats_dir(tmp_path_factory) -> Path:
    """One reference statistics cache for the module's scoring (computed by its first)."""
    return tmp_path_factory.mktemp("stats")


def invoke(command: str, overrides: list[str]) -> int:
    """A command in-process, as its entry point runs it; its exit code (0: success)."""
    with initialize_config_module(config_module="sngan.configs", version_base="1.3"):
        raw = compose(config_name=command, overrides=overrides)
    try:
        run_or_exit(lambda: BODIES[command](raw))
    except SystemExit as stop:
        return int(stop.code)
    return 0


def one_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


def no_slow_work(monkeypatch) -> None:
    """Loading Inception, reading images or generating one fails the test: a refusal must come first."""

    def slow(*args, **kwargs):
        raise AssertionError("the slow work started before the refusal")

    for name in ("extractor_for", "make_scorer", "SeededSampler"):
        monkeypatch.setattr(sngan.evaluate, name, slow)
    for name in ("make_scorer", "load_image_set"):  # images=
        monkeypatch.setattr(sngan.cli.evaluate_images, name, slow)


def pngs(folder: Path, n: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    rng = torch.Generator().manual_seed(seed)
    for i in range(n):
        image = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=rng)
        Image.fromarray(image.numpy()).save(folder / f"{i:03d}.png")
    return folder


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(folder.iterdir())}


# --- evaluate out= (items 4 and 8) ----------------------------------------------------------------


@pytest.mark.parametrize("held", ["checkpoint", "notes", "other_rule"])
@pytest.mark.parametrize("what", ["ckpt", "images"])
def test_evaluate_refuses_to_replace_a_file_that_is_not_its_table_before_loading_inception(
    held, what, run, tmp_path, monkeypatch, capsys
):
    """The issue's case: out= naming another checkpoint replaced it with JSON. Now refused, naming the file
    and what it holds, before Inception is loaded or an image read; nothing changes on disk."""
    out = tmp_path / ("ckpt_00000004.pt" if held == "checkpoint" else "table.json")
    if held == "checkpoint":
        shutil.copy(run / "checkpoints" / "ckpt_00000004.pt", out)
    else:
        other = {"rule": "fid50k_train", "results": [{"fid": 3.0}]} if held == "other_rule" else {"my": "notes"}
        out.write_text(json.dumps(other))
    before = listing(tmp_path)
    no_slow_work(monkeypatch)
    source = (
        [f"ckpt={run / 'checkpoints' / 'ckpt_00000001.pt'}"] if what == "ckpt" else [f"images={tmp_path}", *DATASET]
    )
    assert invoke("evaluate", [*source, *RULE, f"out={out}", "device=cpu"]) == 2
    err = one_error(capsys)
    assert f"out={out}" in err and "overwrite=true" in err and "nothing was written" in err, err
    said = {"checkpoint": "a zip archive (a PyTorch checkpoint?)", "notes": "not an evaluate table",
            "other_rule": "an evaluate table of rule fid50k_train"}[held]  # fmt: skip
    assert said in err, err
    assert listing(tmp_path) == before


@pytest.mark.parametrize("what", ["ckpt", "images"])
def test_evaluate_out_a_folder_is_refused_before_scoring_naming_it(what, run, tmp_path, monkeypatch, capsys):
    """Issue 36's item 8: out=<a folder> scored a row, then failed naming a temporary file. Now refused at once
    (overwrite=true too: a folder is never replaced), naming the folder the user gave."""
    out = tmp_path / "runs"
    (out / "inside").mkdir(parents=True)
    no_slow_work(monkeypatch)
    source = [f"ckpt={run}"] if what == "ckpt" else [f"images={tmp_path}", *DATASET]
    for more in ([], ["overwrite=true"]):
        assert invoke("evaluate", [*source, *RULE, f"out={out}", "device=cpu", *more]) == 2
        err = one_error(capsys)
        assert f"out={out} is a folder" in err and ".tmp" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"] and listing(out) == {"inside": b"<dir>"}


def test_evaluate_adds_rows_to_its_own_table_and_a_row_scored_again_replaces_its_old_one(
    run, stats_dir, with_inception, tmp_path
):
    out = tmp_path / "table.json"
    common = [*RULE, f"inception.stats_dir={stats_dir}", f"out={out}", "device=cpu"]
    for step in (1, 2):
        assert invoke("evaluate", [f"ckpt={run / 'checkpoints' / f'ckpt_0000000{step}.pt'}", *common]) == 0
    doc = json.loads(out.read_text())
    assert [row["step"] for row in doc["results"]] == [1, 2] and doc["rule"] == "tiny"
    doc["results"][0]["fid"] = -1.0  # marks the old row: scored again, it must go
    out.write_text(json.dumps(doc))
    assert invoke("evaluate", [f"ckpt={run / 'checkpoints' / 'ckpt_00000001.pt'}", *common]) == 0
    again = json.loads(out.read_text())
    assert [row["step"] for row in again["results"]] == [1, 2]  # replaced in place, not appended
    assert again["results"][0]["fid"] > 0 and again["results"][1] == doc["results"][1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]  # no temporary file left


def test_a_checkpoint_scored_again_under_another_spelling_of_its_path_replaces_its_row(tmp_path, monkeypatch):
    """``ckpt.pt``, ``./ckpt.pt``, its absolute path and a link to it name one file: one row, replaced in place
    (rows used to be matched by the path string, so each spelling added a row)."""
    from sngan.cli.tables import merged

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ckpt.pt").write_bytes(b"")
    (tmp_path / "link.pt").symlink_to(tmp_path / "run" / "ckpt.pt")
    monkeypatch.chdir(tmp_path)
    row = lambda path, fid: {"checkpoint": path, "step": 5, "network": "g", "fid": fid}  # noqa: E731
    old = {"results": [row("run/ckpt.pt", 1.0), row("run/other.pt", 2.0)], "skipped": ["./run/ckpt.pt"]}
    for spelling in ("./run/ckpt.pt", str(tmp_path / "run" / "ckpt.pt"), "link.pt"):
        rows, left_out = merged(old, [row(spelling, 3.0)], [])
        assert [(r["checkpoint"], r["fid"]) for r in rows] == [(spelling, 3.0), ("run/other.pt", 2.0)], spelling
        assert left_out == []  # scored now under another spelling: no longer left out
    rows, _ = merged(old, [{**row("run/ckpt.pt", 3.0), "network": "ema"}], [])
    assert len(rows) == 3  # another network of the same file is another row


def test_evaluate_images_adds_other_images_and_replaces_the_same_images(stats_dir, with_inception, tmp_path):
    a, b = pngs(tmp_path / "a", 10, 0), pngs(tmp_path / "b", 10, 1)
    out = tmp_path / "images.json"
    common = [*DATASET, *RULE, f"inception.stats_dir={stats_dir}", f"out={out}", "device=cpu"]
    for source in (a, b, a):
        assert invoke("evaluate", [f"images={source}", *common]) == 0
    rows = json.loads(out.read_text())["results"]
    assert [row["images"] for row in rows] == [str(a.resolve()), str(b.resolve())]
    assert all(row["sizes"] == {"32x32": 10} and row["resized"] is None for row in rows)


def test_evaluate_refuses_a_table_of_another_protocol_before_generating_an_image(
    run, stats_dir, with_inception, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "table.json"
    first = [f"inception.stats_dir={stats_dir}", f"out={out}", "device=cpu"]
    checkpoint = f"ckpt={run / 'checkpoints' / 'ckpt_00000001.pt'}"
    assert invoke("evaluate", [checkpoint, *first, *RULE, "seed=1"]) == 0
    capsys.readouterr()
    before = out.read_bytes()

    def generated(*args, **kwargs):
        raise AssertionError("an image was generated before the refusal")

    with monkeypatch.context() as patched:
        patched.setattr(sngan.evaluate, "SeededSampler", generated)
        for other, said in [
            ([checkpoint, "seed=2"], "seed 1 there, 2 now"),
            ([checkpoint, "seed=1", "metrics.n_fake=12", "metrics.kid_subset_size=10"], "n_fake 10 there, 12 now"),
            ([f"images={pngs(tmp_path / 'imgs', 10, 0)}", *DATASET], "seed 1 there, None now"),
        ]:
            assert invoke("evaluate", [*first, *RULE, *other]) == 2
            err = one_error(capsys)
            assert f"out={out} holds an evaluate table of rule tiny made under another protocol" in err, err
            assert said in err and "overwrite=true" in err, err
            assert out.read_bytes() == before
    assert invoke("evaluate", [checkpoint, *first, *RULE, "seed=2", "overwrite=true"]) == 0
    doc = json.loads(out.read_text())
    assert doc["seed"] == 2 and len(doc["results"]) == 1


# --- sample (item 5) -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("sample_safety") / "ckpt_00000000.pt")


@pytest.mark.parametrize("kind", ["grid.png", "interpolation.png"])
def test_sample_refuses_to_replace_its_grid_or_interpolation_without_overwrite(kind, generator_file, tmp_path, capsys):
    mode = "grid=true" if kind == "grid.png" else "interpolate=true"
    command = [f"ckpt={generator_file}", "n=4", mode, f"out={tmp_path}", "device=cpu"]
    (tmp_path / kind).write_bytes(b"the earlier good image")
    assert invoke("sample", command) == 2
    err = one_error(capsys)
    assert str(tmp_path / kind) in err and "overwrite=true" in err and "nothing was written" in err, err
    assert listing(tmp_path) == {kind: b"the earlier good image"}
    assert invoke("sample", [*command, "overwrite=true"]) == 0
    assert Image.open(tmp_path / kind).size[0] > 32 and sorted(p.name for p in tmp_path.iterdir()) == [kind]
    (tmp_path / kind).unlink()
    (tmp_path / kind).mkdir()  # a folder of that name is never replaced
    assert invoke("sample", [*command, "overwrite=true"]) == 2
    assert "is a folder" in one_error(capsys) and (tmp_path / kind).is_dir()


def torn_save(self, fp, format=None, **params):
    """PIL's save stopped part-way by a full disk (EFBIG: an OSError that names no file)."""
    data = b"\x89PNG\r\n\x1a\n a few bytes"
    if isinstance(fp, (str, os.PathLike)):
        Path(fp).write_bytes(data)
    else:
        fp.write(data)
    raise OSError(errno.EFBIG, "File too large")


@pytest.mark.parametrize("mode", ["grid=true", "interpolate=true", "n=3"])
def test_a_png_is_written_whole_or_not_at_all_and_its_failed_write_names_it(
    mode, generator_file, tmp_path, monkeypatch, capsys
):
    """Every PNG (sample's and the training run's grids: all go through save_png) goes to a temporary file
    renamed into place: a failed write leaves the earlier file whole and no partial or temporary file."""
    name = {"grid=true": "grid.png", "interpolate=true": "interpolation.png", "n=3": "000000.png"}[mode]
    command = [f"ckpt={generator_file}", mode, f"out={tmp_path}", "device=cpu", "overwrite=true"]
    assert invoke("sample", command) == 0
    before = listing(tmp_path)
    monkeypatch.setattr(Image.Image, "save", torn_save)
    assert invoke("sample", command) == 2
    err = one_error(capsys)
    if mode != "n=3":
        assert listing(tmp_path) == before  # the earlier image, whole
    else:  # overwrite=true removed the earlier numbered PNGs first; none is left half-written
        assert listing(tmp_path) == {}
    assert f"Cannot use '{tmp_path / name}' (File too large)" in err, err
    with pytest.raises(OSError) as failed:
        write_atomic(tmp_path / "x.png", lambda f: torn_save(None, f))
    assert failed.value.filename == str(tmp_path / "x.png") and not (tmp_path / "x.png").exists()


SLOW_RENAME = """
import os, sys, time
real_replace = os.replace
def slow_replace(src, dst, **kw):
    time.sleep(0.5 if ".tmp" in str(src) else 0)
    return real_replace(src, dst, **kw)
os.replace = slow_replace
from sngan.sample import main
main()
"""


@pytest.mark.slow
def test_kill_9_while_sample_writes_its_grid_leaves_the_earlier_grid_whole(generator_file, tmp_path):
    """The issue's case: kill -9 during ``sample grid=true`` left a truncated grid.png, the good one gone."""
    command = [f"ckpt={generator_file}", "n=16", "grid=true", f"out={tmp_path}", "device=cpu"]
    assert invoke("sample", command) == 0
    good = (tmp_path / "grid.png").read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RENAME, *command, "seed=1", "overwrite=true"])
    deadline = time.monotonic() + 120
    while not [p for p in tmp_path.iterdir() if ".tmp" in p.name]:  # written, not yet renamed
        assert proc.poll() is None and time.monotonic() < deadline, "sample did not write its grid"
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=60)
    assert (tmp_path / "grid.png").read_bytes() == good
    assert Image.open(tmp_path / "grid.png").size == (2 + 4 * 34, 2 + 4 * 34)


# --- a full disk names the file (item 9) ---------------------------------------------------------


def limit_file_size(limit: int):
    def limit_in_child() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # make the write fail with EFBIG, not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_in_child


@pytest.mark.slow
@pytest.mark.parametrize("command", ["export", "sample", "evaluate", "fid_stats"])
def test_a_full_disk_names_the_file_being_written_and_leaves_nothing_behind(
    command, run, generator_file, stats_dir, with_inception, tmp_path
):
    """The issue's case: export under ``ulimit -f`` said "Cannot use '?' (File too large)"."""
    out = tmp_path / "out"
    out.mkdir()
    if command == "evaluate":  # the reference statistics first, so that the JSON is the one file written
        assert invoke("evaluate", [f"ckpt={run}/checkpoints/ckpt_00000001.pt", *RULE, f"out={tmp_path / 'a.json'}",
                                   f"inception.stats_dir={stats_dir}", "device=cpu"]) == 0  # fmt: skip
    args, named = {
        "export": ([f"ckpt={generator_file}", f"out={out / 'g.safetensors'}"], out / "g.safetensors"),
        "sample": ([f"ckpt={generator_file}", "n=16", "grid=true", f"out={out}", "device=cpu"], out / "grid.png"),
        "evaluate": ([f"ckpt={run}/checkpoints/ckpt_00000001.pt", *RULE, f"out={out / 't.json'}",
                      f"inception.stats_dir={stats_dir}", "device=cpu"], out / "t.json"),
        "fid_stats": ([*DATASET, "n=20", "inception.dims=64", f"inception.stats_dir={out}", "device=cpu"],
                      out / "synthetic-k10-n150-s0_train_32px_20_64d.npz"),
    }[command]  # fmt: skip
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-m", f"sngan.{command}", *args], preexec_fn=limit_file_size(200),
                          capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"'{named}' (File too large)" in proc.stderr and "'?'" not in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and not list(out.iterdir())  # no partial or temporary file


# --- Ctrl-C says what was written (item 6) -------------------------------------------------------


def interrupt_when(proc: subprocess.Popen, ready, what: str, sig: int = signal.SIGINT) -> str:
    """``sig`` (SIGINT: Ctrl-C) to ``proc`` once ``ready()``; its stderr."""
    deadline = time.monotonic() + 300
    while not ready():
        assert proc.poll() is None, f"the command ended before {what}: {proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no {what}"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err and "before training started" not in err, err
    return err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_in_sample_says_how_many_pngs_were_written_each_whole(sig, generator_file, tmp_path):
    """Ctrl-C, or SIGTERM (``docker stop``, ``kill``): the same stop, the same report, exit 128 + the signal."""
    out = tmp_path / "samples"
    command = ["-m", "sngan.sample", f"ckpt={generator_file}", "n=5000", f"out={out}", "device=cpu"]
    proc = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, text=True)
    err = interrupt_when(proc, lambda: out.is_dir() and len(os.listdir(out)) > 20, "PNGs", sig)
    said = re.search(rf"Stopped by {signal.Signals(sig).name}: ([\d,]+) of 5,000 PNGs were written to (.+) "
                     r"\((\d+)\.png-(\d+)\.png\), each complete; the rest were not\. Run the command again with "
                     r"overwrite=true", err)  # fmt: skip
    assert said, err
    count = int(said[1].replace(",", ""))
    names = sorted(p.name for p in out.iterdir())
    assert said[2] == str(out) and names == [f"{i:06d}.png" for i in range(count)]  # no partial or temp file
    assert (said[3], said[4]) == ("000000", f"{count - 1:06d}")
    for name in names:
        with Image.open(out / name) as image:
            image.load()


@pytest.mark.slow
def test_ctrl_c_in_evaluate_keeps_the_rows_scored_and_says_where(run, stats_dir, with_inception, tmp_path):
    out = tmp_path / "table.json"
    command = ["-m", "sngan.evaluate", f"ckpt={run}", *RULE, f"inception.stats_dir={stats_dir}", f"out={out}",
               "device=cpu"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, text=True)
    err = interrupt_when(proc, out.exists, "first row")
    rows = json.loads(out.read_text())["results"]
    n = len(rows)
    said = f"the {n} row{'s' if n > 1 else ''} scored so far {'are' if n > 1 else 'is'} in {out} (complete JSON)"
    assert f"Stopped by SIGINT: {said}." in err and 1 <= n < 5, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.json"]


@pytest.mark.slow
def test_ctrl_c_in_fid_stats_writes_nothing_and_says_so(with_inception, tmp_path):
    stats = tmp_path / "stats"
    command = ["-m", "sngan.fid_stats", "dataset=synthetic", "dataset.size=400", "dataset.resolution=32",
               "inception.dims=64", f"inception.stats_dir={stats}", "device=cpu"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, *command], stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def computing() -> bool:
        lines.append(proc.stderr.readline())
        assert lines[-1] or proc.poll() is None, "".join(lines)
        return "Computing reference statistics" in lines[-1]

    err = interrupt_when(proc, computing, "feature pass")
    assert "Stopped by SIGINT: nothing was written." in err, err
    assert not stats.exists() or not list(stats.iterdir())  # neither the .npz nor a temporary file


EXPORT_STOPPED = """
import os, signal, sys
from sngan.training import stopping
stopping.answer_ctrl_c_from_the_start(trains=False)  # as python -m sngan.export does
real = {"fsync": os.fsync, "replace": os.replace}
def stop_then(name):
    def call(*args):
        result = real[name](*args)
        os.kill(os.getpid(), signal.SIGINT)
        return result
    return call
setattr(os, sys.argv[1], stop_then(sys.argv[1]))  # a Ctrl-C right after the first fsync, or the first rename
sys.argv[1:2] = []
from sngan.export import main
main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["start-up", "start-up-sigterm", "fsync", "replace"])
def test_ctrl_c_in_export_says_what_was_written(moment, generator_file, tmp_path):
    """Export is too quick to interrupt by timing, so the moment is chosen: at start-up (Ctrl-C, or SIGTERM as
    ``docker stop`` sends it), while the first file is written (after its fsync), and between the two renames
    (the torn pair: named, with its remedy)."""
    out = tmp_path / "g.safetensors"
    args = [f"ckpt={generator_file}", f"out={out}"]
    at_start = moment.startswith("start-up")
    sig = signal.SIGTERM if moment.endswith("sigterm") else signal.SIGINT
    cmd = ["-m", "sngan.export", *args] if at_start else ["-c", EXPORT_STOPPED, moment, *args]
    proc = subprocess.Popen([sys.executable, *cmd], stderr=subprocess.PIPE, text=True)
    if at_start:
        time.sleep(0.5)  # importing torch: the command has not begun
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig and "Traceback" not in err, err[-3000:]
    if moment == "replace":
        assert f"Stopped by SIGINT: {out} was written, complete, but not the other: export again with " in err, err
        assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]  # whole; no temporary file
    else:
        assert f"Stopped by {signal.Signals(sig).name}: nothing was written." in err, err
        assert not list(tmp_path.iterdir())


def test_exports_stop_report_says_which_of_the_pair_was_written(tmp_path):
    pair = [tmp_path / "g.safetensors", tmp_path / "g.json"]
    before = stamp(pair)
    assert stop_report(before) == "nothing was written"
    pair[1].write_text("{}")
    assert stop_report(before).startswith(f"{pair[1]} was written, complete, but not the other: export again")
    pair[0].write_bytes(b"weights")
    assert stop_report(before) == f"{pair[0]} and {pair[1]} were written, complete"


# --- fid_stats ------------------------------------------------------------------------------------


def test_fid_stats_refuses_a_folder_at_its_statistics_path_before_the_feature_pass(
    with_inception, tmp_path, monkeypatch, capsys
):
    target = tmp_path / "synthetic-k10-n150-s0_train_32px_20_64d.npz"
    target.mkdir()

    def slow(*args, **kwargs):
        raise AssertionError("the feature pass started before the refusal")

    monkeypatch.setattr(sngan.metrics.reference, "extract", slow)
    command = [*DATASET, "n=20", "inception.dims=64", f"inception.stats_dir={tmp_path}", "device=cpu"]
    assert invoke("fid_stats", command) == 2
    err = one_error(capsys)
    assert f"'{target}' (Is a directory)" in err and target.is_dir() and listing(tmp_path) == {target.name: b"<dir>"}
