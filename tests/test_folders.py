"""Image folders as users have them: symlinked class folders, phone photos with an EXIF orientation,
16-bit and float images, transparency."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from sngan.data import load_images
from sngan.data.folders import folder_images


def test_symlinked_class_folders_are_read_and_a_link_cycle_ends(tmp_path):
    elsewhere = tmp_path / "elsewhere" / "cats"
    elsewhere.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(elsewhere / f"{i}.png")
    root = tmp_path / "root"
    (root / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8), (0, 0, 200)).save(root / "dog" / "d.png")
    (root / "cat").symlink_to(elsewhere, target_is_directory=True)
    (root / "dog" / "loop").symlink_to(root, target_is_directory=True)  # a cycle: not followed
    (root / ".hidden").mkdir()
    Image.new("RGB", (8, 8)).save(root / ".hidden" / "x.png")
    paths = folder_images(str(root))
    assert [p.relative_to(root).as_posix() for p in paths] == ["cat/0.png", "cat/1.png", "cat/2.png", "dog/d.png"]
    data = load_images("folder", str(root), 8)
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 0, 0, 1]
    (root / "kitten").symlink_to(elsewhere, target_is_directory=True)  # two links to one folder: both are read
    assert [p.parent.name for p in folder_images(str(root))] == ["cat"] * 3 + ["dog"] + ["kitten"] * 3


def test_orientation_bit_depth_and_transparency_are_read_as_seen(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    # A phone photo: stored 32 wide and 16 high, left half red; EXIF 6 says "rotate 90 degrees clockwise
    # to view", so it is seen 16 wide and 32 high with the red half on top.
    stored = np.zeros((16, 32, 3), dtype=np.uint8)
    stored[:, :16, 0] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(root / "a_phone.jpg", exif=exif, quality=95)
    Image.fromarray(np.full((16, 16), 25900, dtype=np.uint16)).save(root / "b_grey16.png")  # 25900/257 = 100.8
    Image.fromarray(np.full((16, 16), 0.25, dtype=np.float32)).save(root / "c_float.tiff")  # a quarter
    clear = np.zeros((16, 16, 4), dtype=np.uint8)  # black under full transparency: white is what is seen
    Image.fromarray(clear, "RGBA").save(root / "d_clear.png")
    Image.new("RGB", (16, 16)).save(root / "e_keyed.png", transparency=(0, 0, 0))  # black is the clear colour
    images = load_images("folder", str(root), 16).images.float()
    phone, grey16, quarter, clear, keyed = images
    top, bottom = phone[:, :8].mean((1, 2)), phone[:, 8:].mean((1, 2))  # per channel
    assert top[0] > 200 and top[1] < 40 and bottom[0] < 40, (top, bottom)  # red on top: upright
    assert (grey16 == 101).all()  # scaled and rounded, not clipped to 255
    assert torch.allclose(quarter, torch.full_like(quarter, 64), atol=1)  # not clipped to 0
    assert (clear == 255).all() and (keyed == 255).all()


def test_a_photo_with_damaged_exif_is_read_as_stored(tmp_path, monkeypatch):
    import PIL.ImageOps

    def damaged(img, **kwargs):
        raise SyntaxError("not a TIFF IFD")  # what Pillow raises on some damaged EXIF blocks

    monkeypatch.setattr(PIL.ImageOps, "exif_transpose", damaged)
    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 8), (200, 10, 10)).save(tmp_path / "images" / "p.jpg")
    image = load_images("folder", str(tmp_path / "images"), 8).images[0].float()
    assert image[0].mean() > 150 and image[1].mean() < 60
