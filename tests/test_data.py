"""Datasets from small files written in the real formats; only torchvision's
MD5 check is patched (to a file-exists check), never the readers."""

import os
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from sngan.data import BatchSampler, DatasetError, load_images, make_prototypes, make_synthetic, to_float, to_uint8
from sngan.metrics import synthetic_quality
from sngan.models import build_models


@pytest.fixture
def files_exist_integrity(monkeypatch):
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.stl10 as stl10

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(stl10, "check_integrity", exists)


def write_cifar10(root, n_per_batch=4):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        data[:, 0] = i  # first red pixel tells the file apart
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "labels": [0] * n_per_batch}, f, protocol=2)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)


def test_cifar10_reads_the_real_pickle_format(tmp_path, files_exist_integrity):
    write_cifar10(tmp_path)
    train = load_images("cifar10", str(tmp_path), 32, "train").images
    assert train.shape == (20, 3, 32, 32) and train.dtype == torch.uint8
    assert sorted(set(train[:, 0, 0, 0].tolist())) == [0, 1, 2, 3, 4]
    test = load_images("cifar10", str(tmp_path), 32, "test").images
    assert test.shape == (4, 3, 32, 32) and set(test[:, 0, 0, 0].tolist()) == {5}
    # model=resnet48 dataset=cifar10 dataset.resolution=48 passes the config check (it resolves to 48 both
    # sides) but CIFAR is not resized: refused here, before the first step, instead of failing inside D.
    with pytest.raises(DatasetError, match=r"cifar10 images are 32x32 .* not resized, but 48x48 .*\(cnn32, resnet32\)"):
        load_images("cifar10", str(tmp_path), 48, "train")


def test_cifar100_reads_the_real_pickle_format(tmp_path, files_exist_integrity):
    base = tmp_path / "cifar-100-python"
    base.mkdir()
    rng = np.random.default_rng(1)
    for name, n in (("train", 6), ("test", 2)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        with open(base / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": [3] * n, "coarse_labels": [1] * n}, f, protocol=2)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{i}" for i in range(100)]}, f, protocol=2)
    train = load_images("cifar100", str(tmp_path), 32, "train").images
    assert train.shape == (6, 3, 32, 32)
    # Row-major CHW pixels: the first 1024 bytes are the red plane.
    assert train[0, 0, 0, 1].item() == int(data_row(base / "train")[1])


def data_row(path):
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")["data"][0]


def test_stl10_unlabeled_is_resized_96_to_48_by_2x2_averages(tmp_path, files_exist_integrity):
    base = tmp_path / "stl10_binary"
    base.mkdir()
    img = np.zeros((3, 3, 96, 96), dtype=np.uint8)
    img[0, :, 0, 0], img[0, :, 0, 1], img[0, :, 1, 0], img[0, :, 1, 1] = 0, 100, 200, 100  # mean 100
    img[1, 2] = 255
    # STL-10's binary layout is column-major per channel: write the transpose.
    img.transpose(0, 1, 3, 2).tofile(base / "unlabeled_X.bin")
    for split in ("train", "test"):  # the archive's other files, one image each
        np.zeros((1, 3, 96, 96), dtype=np.uint8).tofile(base / f"{split}_X.bin")
        np.ones(1, dtype=np.uint8).tofile(base / f"{split}_y.bin")
    images = load_images("stl10", str(tmp_path), 48, "unlabeled").images
    assert images.shape == (3, 3, 48, 48)
    assert images[0, 0, 0, 0].item() == 100
    assert torch.all(images[1, 2] == 255) and torch.all(images[2] == 0)


def test_missing_dataset_error_names_files_folder_and_remedy(tmp_path, monkeypatch):
    import torchvision.datasets.utils as utils

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    monkeypatch.setattr(utils, "download_and_extract_archive", offline)
    with pytest.raises(DatasetError) as err:
        load_images("cifar10", str(tmp_path / "nowhere"), 32)
    msg = str(err.value)
    assert "cifar-10-batches-py/data_batch_1" in msg and str(tmp_path / "nowhere") in msg
    assert "dataset.root" in msg and "cifar-10-python.tar.gz" in msg


def test_folder_resizes_and_centre_crops(tmp_path):
    (tmp_path / "a").mkdir()
    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 20:60] = 255  # white centre square, black side bands that the crop removes
    Image.fromarray(wide).save(tmp_path / "a" / "wide.png")
    Image.fromarray(np.full((10, 10, 3), 7, dtype=np.uint8)).save(tmp_path / "small.jpg", quality=100)
    images = load_images("folder", str(tmp_path), 32).images
    assert images.shape == (2, 3, 32, 32)
    assert images[0].float().mean() > 240  # the centre crop of the wide image is white
    assert abs(images[1].float().mean() - 7) < 3


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        load_images("folder", str(tmp_path / "missing"), 32)
    with pytest.raises(DatasetError, match="holds no images"):
        load_images("folder", str(tmp_path), 32)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match="bad.png"):
        load_images("folder", str(tmp_path), 32)


def test_synthetic_prototypes_meet_the_specification():
    for res in (32, 48):
        protos = make_prototypes(10, res, seed=0)
        flat = protos.flatten(1)
        assert flat.std(dim=1).min() >= 0.3
        assert flat.abs().max() <= 0.9
        dist = torch.cdist(flat, flat) / flat.shape[1] ** 0.5
        assert dist[~torch.eye(10, dtype=torch.bool)].min() >= 0.5
    assert torch.equal(make_prototypes(10, 32, seed=0), make_prototypes(10, 32, seed=0))
    assert not torch.equal(make_prototypes(10, 32, seed=0), make_prototypes(10, 32, seed=1))


def test_synthetic_measure_scores_real_samples_high_and_untrained_generator_low():
    data = make_synthetic(2000, 32)
    real = synthetic_quality(to_float(data.images), data.prototypes)
    assert real["quality"] >= 0.99 and real["modes_covered"] == 10
    torch.manual_seed(0)
    g, _ = build_models("cnn32", width=0.25)
    with torch.no_grad():
        fake = g(torch.randn(1000, 128))
    untrained = synthetic_quality(fake, data.prototypes)
    assert untrained["quality"] <= 0.05
    # A generator stuck on one prototype has full quality but covers one mode.
    collapsed = synthetic_quality(data.prototypes[:1].repeat(1000, 1, 1, 1), data.prototypes)
    assert collapsed["quality"] == 1.0 and collapsed["modes_covered"] == 1


def test_uint8_float_round_trip():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).repeat(1, 3, 1, 1)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)


def test_sampler_covers_an_epoch_and_resumes_its_order():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 3, 2, 2).contiguous()
    a = BatchSampler(images, seed=3)
    first = torch.cat([a.next_indices(4) for _ in range(2)] + [a.next_indices(2)])
    assert sorted(first.tolist()) == list(range(10))  # one epoch, no repeats
    a.next_indices(3)
    state = a.state_dict()
    want = [a.next_indices(4) for _ in range(5)]
    b = BatchSampler(images, seed=99)
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(want, [b.next_indices(4) for _ in range(5)]))
    with pytest.raises(ValueError, match="dataset has"):
        BatchSampler(images[:5], seed=0).load_state_dict(state)


def test_sampler_flips_only_when_asked():
    images = torch.zeros(64, 3, 2, 2, dtype=torch.uint8)
    images[:, :, :, 0] = 255
    flipped = BatchSampler(images, seed=0, hflip=True).next(64, torch.device("cpu"))[0]
    left = flipped[:, 0, 0, 0]
    assert (left == 1).any() and (left == -1).any()
    plain = BatchSampler(images, seed=0).next(64, torch.device("cpu"))[0]
    assert torch.all(plain[:, :, :, 0] == 1)


def test_folder_converts_grayscale_rgba_and_odd_sizes(tmp_path):
    Image.fromarray(np.full((31, 45), 200, dtype=np.uint8), mode="L").save(tmp_path / "gray.png")
    rgba = np.zeros((17, 9, 4), dtype=np.uint8)
    rgba[..., 1], rgba[..., 3] = 255, 128
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    images = load_images("folder", str(tmp_path), 32).images
    assert images.shape == (2, 3, 32, 32)
    assert torch.all((images[0] - 200).abs() <= 1)  # gray.png sorts first: grey in all three channels
    # half-transparent green, as seen on white (tests/test_folders.py: full transparency)
    assert images[1, 1].float().mean() > 250 and (images[1, 0].float() - 127).abs().max() <= 1


def test_truncated_image_is_named_in_the_error(tmp_path):
    buf = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf)
    (tmp_path / "cut.jpg").write_bytes(buf.read_bytes()[:200])
    buf.unlink()
    with pytest.raises(DatasetError, match=r"cut\.jpg"):
        load_images("folder", str(tmp_path), 32)


# ----------------------------------------------------------------- decoded-image cache


def write_folder(root, n=3):
    for i in range(n):
        (root / f"class{i % 2}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 40 * i, dtype=np.uint8)).save(root / f"class{i % 2}" / f"{i}.png")


def count_decodes(monkeypatch, name="load_folder"):
    import sngan.data.folders
    import sngan.data.torchvision_sets

    module = sngan.data.folders if name == "load_folder" else sngan.data.torchvision_sets
    calls = []
    real = getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_folder_is_decoded_once_then_read_from_the_cache_until_a_file_changes(tmp_path, monkeypatch):
    write_folder(tmp_path)
    decodes = count_decodes(monkeypatch)
    first = load_images("folder", str(tmp_path), 32, cache=True)
    cached = sorted((tmp_path / ".sngan_cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("folder-32px-")
    again = load_images("folder", str(tmp_path), 32, cache=True)
    assert len(decodes) == 1  # the second load read the cache
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)
    assert again.classes == first.classes == ["class0", "class1"]
    # A changed image (new size and time) is decoded again; the stale cache file is replaced.
    Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8)).save(tmp_path / "class0" / "0.png")
    os.utime(tmp_path / "class0" / "0.png", ns=(1, 1))
    changed = load_images("folder", str(tmp_path), 32, cache=True)
    assert len(decodes) == 2 and changed.images[0].float().mean() > 190
    assert len(list((tmp_path / ".sngan_cache").iterdir())) == 1
    # Another resolution is another cache file; cache=False neither reads nor writes one.
    load_images("folder", str(tmp_path), 48, cache=True)
    assert len(list((tmp_path / ".sngan_cache").iterdir())) == 2
    load_images("folder", str(tmp_path), 32, cache=False)
    assert len(decodes) == 4


def test_a_corrupt_cache_is_decoded_again_and_replaced(tmp_path, monkeypatch, capsys):
    write_folder(tmp_path)
    first = load_images("folder", str(tmp_path), 32, cache=True)
    (cached,) = (tmp_path / ".sngan_cache").iterdir()
    cached.write_bytes(cached.read_bytes()[:100])  # truncated
    decodes = count_decodes(monkeypatch)
    assert torch.equal(load_images("folder", str(tmp_path), 32, cache=True).images, first.images)
    assert len(decodes) == 1 and "ignoring the unreadable dataset cache" in capsys.readouterr().err
    assert torch.equal(torch.load(cached, weights_only=True)["images"], first.images)  # rewritten whole


def test_an_unwritable_cache_folder_warns_and_trains_from_the_decoded_images(tmp_path, capsys):
    write_folder(tmp_path)
    (tmp_path / ".sngan_cache").write_text("a file where the cache folder would go")
    found = load_images("folder", str(tmp_path), 32, cache=True)
    assert found.images.shape == (3, 3, 32, 32)
    err = capsys.readouterr().err
    assert "could not write the dataset cache" in err and "dataset.cache=false" in err


def test_cifar_is_cached_beside_the_archive(tmp_path, files_exist_integrity, monkeypatch):
    write_cifar10(tmp_path)
    first = load_images("cifar10", str(tmp_path), 32, "test", cache=True)
    assert [p.name.split("-")[:2] for p in (tmp_path / ".sngan_cache").iterdir()] == [["cifar10", "test"]]
    decodes = count_decodes(monkeypatch, "load_cifar")
    again = load_images("cifar10", str(tmp_path), 32, "test", cache=True)
    assert not decodes and torch.equal(again.images, first.images) and again.classes == first.classes
