"""prepare_data.py: the held-out test/ split is exactly train.py's validation split, written all or nothing."""
import pytest
import torch

import utils


def test_prepare_data_holds_out_train_py_validation_split(tiny_data, tmp_path):
    import prepare_data

    prepare_data.main(["--source", str(tiny_data), "--out", str(tmp_path / "split"), "--val-per-class", "3"])
    images, labels = utils.load_data("train", tiny_data, utils.CIFAR10_CLASSES)
    held_out = utils.validation_indices(labels, 3, seed=0)
    test_images, test_labels = utils.load_data("test", tmp_path / "split", utils.CIFAR10_CLASSES)
    train_images, _ = utils.load_data("train", tmp_path / "split", utils.CIFAR10_CLASSES)
    assert len(test_labels) == 30 and len(train_images) == 90
    assert torch.equal(test_images, images[held_out]) and torch.equal(test_labels, labels[held_out])
    with pytest.raises(utils.UserError, match="already exists"):
        prepare_data.main(["--source", str(tiny_data), "--out", str(tmp_path / "split")])


def test_missing_source_says_how_to_extract_it(tmp_path):
    import prepare_data

    with pytest.raises(utils.UserError, match="train/<class>/ images. First .*tar xzf .* -C data"):
        prepare_data.main(["--source", str(tmp_path / "none"), "--out", str(tmp_path / "split")])
    assert not (tmp_path / "split").exists()
