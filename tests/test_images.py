"""Grids and PNGs written without torchvision, and commands that start without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.utils import make_grid, save_image

from sngan.data.images import grid, save_png


@pytest.mark.parametrize("n,nrow", [(1, 8), (3, 8), (10, 4), (64, 8), (7, 3)])
def test_grids_and_pngs_are_torchvisions_pixel_for_pixel(tmp_path, n, nrow):
    images = torch.rand(n, 3, 5, 6, generator=torch.Generator().manual_seed(n))
    torch.testing.assert_close(grid(images, nrow), make_grid(images, nrow=nrow), rtol=0, atol=0)
    save_image(images, tmp_path / "theirs.png", nrow=nrow)
    save_png(images, tmp_path / "ours.png", nrow)
    assert np.array_equal(np.array(Image.open(tmp_path / "ours.png")), np.array(Image.open(tmp_path / "theirs.png")))
    save_image(images[0], tmp_path / "theirs1.png")
    save_png(images[0], tmp_path / "ours1.png")
    assert np.array_equal(np.array(Image.open(tmp_path / "ours1.png")), np.array(Image.open(tmp_path / "theirs1.png")))


def test_grid_refuses_a_tensor_that_is_not_a_batch():
    with pytest.raises(ValueError, match=r"not a tensor of shape \(3, 5, 6\)"):
        grid(torch.rand(3, 5, 6))


def test_the_weights_address_is_pytorch_fids():
    from pytorch_fid.inception import FID_WEIGHTS_URL

    from sngan.metrics.inception import WEIGHTS_URL

    assert WEIGHTS_URL == FID_WEIGHTS_URL


def test_commands_import_neither_torchvision_nor_pytorch_fid_until_they_need_them():
    # torchvision's import pulls in torch's compiler stack: seconds for every command, error or not.
    modules = (
        "sngan.train, sngan.sample, sngan.evaluate, sngan.fid_stats, sngan.training.tracking, sngan.metrics.scoring"
    )
    heavy = "{'torchvision', 'pytorch_fid'}"
    code = f"import sys, {modules}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {heavy}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
