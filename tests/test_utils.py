"""utils.py on tiny data sets made here: image folders, torchvision pickles, class subsets, batches, checkpoints."""
import numpy as np
import pytest
import torch
from conftest import make_image_folder, make_torchvision_copy
from PIL import Image

import utils
from course import models


def test_image_folder(tiny_data):
    images, labels = utils.load_data("train", tiny_data, utils.CIFAR10_CLASSES)
    assert images.shape == (120, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.bincount().tolist() == [12] * 10


def test_image_folder_keeps_cifar_label_order(tmp_path):
    # only two class folders: labels must still be CIFAR-10's (bird = 2, ship = 8)
    make_image_folder(tmp_path, {"train": 3}, classes=("ship", "bird"))
    _, labels = utils.load_split("train", tmp_path)
    assert sorted(set(labels.tolist())) == [2, 8]


def decoded_fresh(folder):
    """The folder's images and labels decoded from the files, bypassing the cache."""
    items = utils.list_image_folder(folder)
    return np.stack([utils.read_image(path) for path, _ in items]), np.asarray([label for _, label in items])


def cache_files(cache_home):
    return sorted((cache_home / "resnet50-cifar10" / "images").iterdir())


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    """An empty cache folder of the test's own (XDG_CACHE_HOME)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_second_read_of_an_image_folder_comes_from_the_cache(tmp_path, cache_home, monkeypatch):
    make_image_folder(tmp_path / "data", {"train": 3})
    utils.load_split("train", tmp_path / "data", cache=False)  # the course's loop, as a baseline: no cache
    assert not cache_home.exists()
    first = utils.load_split("train", tmp_path / "data")
    assert len(cache_files(cache_home)) == 1

    def no_decoding(path):
        raise AssertionError(f"{path} was decoded again")

    monkeypatch.setattr(utils, "read_image", no_decoding)
    second = utils.load_split("train", tmp_path / "data")
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_a_changed_added_or_removed_image_is_noticed(tmp_path, cache_home):
    folder = make_image_folder(tmp_path / "data", {"train": 3}) / "train"
    utils.load_split("train", folder.parent)
    changed = folder / "cat" / "0001.png"
    Image.fromarray(np.full((32, 32, 3), 7, dtype=np.uint8)).save(changed)
    images, labels = utils.load_split("train", folder.parent)
    assert np.array_equal(images, decoded_fresh(folder)[0]) and (images == 7).all(axis=(1, 2, 3)).sum() == 1
    Image.fromarray(np.full((32, 32, 3), 9, dtype=np.uint8)).save(folder / "dog" / "0003.png")
    images, labels = utils.load_split("train", folder.parent)
    assert len(images) == 31 and (labels == 5).sum() == 4 and np.array_equal(images, decoded_fresh(folder)[0])
    for path in (changed, folder / "dog" / "0003.png"):
        path.unlink()
    images, labels = utils.load_split("train", folder.parent)
    assert len(images) == 29 and np.array_equal(images, decoded_fresh(folder)[0])
    assert len(cache_files(cache_home)) == 1  # one cache file per folder, replaced, never piling up


@pytest.mark.parametrize("damage", ["truncated", "one byte flipped", "not a cache at all"])
def test_a_damaged_cache_is_rebuilt_never_believed(tmp_path, cache_home, damage):
    folder = make_image_folder(tmp_path / "data", {"train": 3}) / "train"
    utils.load_split("train", folder.parent)
    [cache] = cache_files(cache_home)
    data = bytearray(cache.read_bytes())
    if damage == "one byte flipped":  # inside the images' pixels
        data[len(data) // 2] ^= 0xFF
    cache.write_bytes(data[:len(data) // 2] if damage == "truncated" else
                      b"not a zip file" if damage == "not a cache at all" else data)
    images, labels = utils.load_split("train", folder.parent)
    expected = decoded_fresh(folder)
    assert np.array_equal(images, expected[0]) and np.array_equal(labels, expected[1])
    assert cache_files(cache_home) == [cache] and len(cache.read_bytes()) == len(data)  # rebuilt whole


def test_a_cache_folder_that_cannot_be_written_only_costs_the_decoding(tmp_path, monkeypatch):
    folder = make_image_folder(tmp_path / "data", {"train": 2}) / "train"
    (tmp_path / "a file").write_text("")  # XDG_CACHE_HOME/... cannot be made below a file
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "a file"))
    assert np.array_equal(utils.load_split("train", folder.parent)[0], decoded_fresh(folder)[0])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "full disk"))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    assert np.array_equal(utils.load_split("train", folder.parent)[0], decoded_fresh(folder)[0])
    assert list((tmp_path / "full disk" / "resnet50-cifar10" / "images").iterdir()) == []  # no half-written file


def test_torchvision_copy(tmp_path):
    make_torchvision_copy(tmp_path, train_per_batch=4, test_count=6)
    train_images, train_labels = utils.load_split("train", tmp_path)
    test_images, _ = utils.load_split("test", tmp_path)
    assert train_images.shape == (20, 32, 32, 3) and train_images.dtype == np.uint8
    assert test_images.shape == (6, 32, 32, 3)
    # pixel (0, 0) of the red plane is byte 0 of the row, green is byte 1024
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        import pickle
        raw = pickle.load(f)["data"]
    assert train_images[0, 0, 0, 0] == raw[0, 0] and train_images[0, 0, 0, 1] == raw[0, 1024]


def test_class_subset(tiny_data):
    classes = utils.parse_classes("automobile,airplane,bird")
    images, labels = utils.load_data("test", tiny_data, classes)
    assert len(labels) == 6 and sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    # labels follow the order given: automobile -> 0
    full_images, full_labels = utils.load_data("test", tiny_data, utils.CIFAR10_CLASSES)
    assert torch.equal(images[labels == 0], full_images[full_labels == 1])


def test_unknown_class_is_a_clear_error():
    with pytest.raises(utils.UserError, match="unknown class name.*plane.*Choose from"):
        utils.parse_classes("plane,bird")


def test_missing_data_dir_is_a_clear_error(tmp_path):
    with pytest.raises(utils.UserError, match="no CIFAR-10 'train' split found"):
        utils.load_split("train", tmp_path)


def test_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    monkeypatch.setattr(utils, "DEFAULT_DATA_ROOT", tmp_path)
    with pytest.raises(utils.UserError, match="could not download CIFAR-10.*--data-dir"):
        utils.load_split("train", None)


def test_damaged_torchvision_copy_is_a_clear_error(tmp_path):
    make_torchvision_copy(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(utils.UserError, match="data_batch_3.*damaged"):
        utils.load_split("train", tmp_path)


def test_validation_split_is_balanced_and_fixed():
    labels = torch.arange(10).repeat_interleave(50)
    first = utils.validation_indices(labels, 5, seed=0)
    assert torch.equal(first, utils.validation_indices(labels, 5, seed=0))
    assert not torch.equal(first, utils.validation_indices(labels, 5, seed=1))
    assert labels[first].bincount().tolist() == [5] * 10


def test_augment_is_a_crop_of_the_padded_image_maybe_flipped():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out = utils.augment(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    flips = 0
    for image, result in zip(padded, out, strict=True):
        crops = [image[:, y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
        plain = any(torch.equal(result, c) for c in crops)
        flipped = any(torch.equal(result, c.flip(2)) for c in crops)
        assert plain or flipped
        flips += flipped and not plain
    assert 10 < flips < 54  # about half of them are flipped


def test_batches_cover_every_image_once(tiny_data):
    images, labels = utils.load_data("train", tiny_data, utils.CIFAR10_CLASSES)
    batches = utils.Batches(images, labels, 50, "cpu", train=False)
    seen = [batch for batch in batches]
    assert len(batches) == 3 and [len(y) for _, y in seen] == [50, 50, 20]
    x, _ = seen[0]
    assert x.dtype == torch.float32 and x.is_contiguous(memory_format=torch.channels_last)
    batches.channels_last = False
    assert next(iter(batches))[0].is_contiguous()
    mean, std = torch.tensor(utils.MEAN).view(3, 1, 1), torch.tensor(utils.STD).view(3, 1, 1)
    expected = (images[0].float() / 255 - mean) / std
    assert torch.allclose(x[0], expected, atol=1e-6)


def test_cutout_greys_one_square_per_image_and_only_when_asked():
    images = torch.full((6, 3, 32, 32), 7, dtype=torch.uint8)
    out = utils.cutout(images, 8, torch.Generator().manual_seed(0))
    changed = (out != 7).all(1)  # (n, h, w): pixels set to the mean colour
    assert all(0 < n <= 64 for n in changed.sum((1, 2)).tolist())  # at most 8 x 8, clipped at the borders
    grey = out.permute(0, 2, 3, 1)[changed]  # (pixels, 3)
    assert (grey == torch.tensor([125, 123, 114], dtype=torch.uint8)).all()  # the mean colour: 0 once normalized
    plain = utils.Batches(images, torch.zeros(6, dtype=torch.long), 6, "cpu", train=True, seed=1)
    with_cutout = utils.Batches(images, torch.zeros(6, dtype=torch.long), 6, "cpu", train=True, seed=1, cutout=8)
    assert not torch.equal(next(iter(plain))[0], next(iter(with_cutout))[0])


def test_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    models.save_checkpoint(path, torch.nn.Linear(2, 2), {"arch": "x"})
    before = path.read_bytes()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError):
        models.save_checkpoint(path, torch.nn.Linear(2, 2), {"arch": "y"})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left behind
