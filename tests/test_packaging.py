"""The config tree must ship inside the package (as ``sngan.configs``) so a
non-editable install finds it from any working directory."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_contains_every_config_file(tmp_path):
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    proc = subprocess.run([*cmd, str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("sngan-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = ROOT / "sngan" / "configs"
    expected = {f"sngan/configs/{p.relative_to(configs).as_posix()}" for p in configs.rglob("*.yaml")}
    assert "sngan/configs/train.yaml" in expected and "sngan/configs/experiment/quickstart.yaml" in expected
    assert expected <= names
    assert {"sngan/train.py", "sngan/models/resnet.py", "sngan/metrics/synthetic.py"} <= names
