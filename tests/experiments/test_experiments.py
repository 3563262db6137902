"""experiments/reports.py, experiments/plots.py and the CIFAR-stem ResNet-50: figures, shapes, the 3-class subset,
one tiny end-to-end run."""
import matplotlib.image
import pytest
import torch

import utils
from course.resnet_cifar import ResNet50Cifar
from experiments import plots, reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HISTORY = [{"epoch": e, "train_loss": 2.0 / e, "train_accuracy": 30.0 + 10 * e, "val_loss": 2.2 / e,
            "val_accuracy": 28.0 + 9 * e, "lr": 0.01, "seconds": 3.5} for e in (1, 2, 3)]


def assert_png(path):
    """A non-empty PNG that matplotlib reads back as an image."""
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50 and image.std() > 0


def test_plots_write_readable_pngs(tmp_path):
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    true, pred = torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0, 1, 1, 0, 2, 2])
    names = ("airplane", "automobile", "bird")
    written = [plots.plot_history(HISTORY, tmp_path / "history.png", "fake run"),
               plots.plot_comparison({"a": HISTORY, "b": HISTORY[:2]}, tmp_path / "comparison.png", "two runs"),
               plots.plot_predictions(images, true, pred, names, tmp_path / "predictions.png"),
               plots.plot_confusion(true, pred, names, tmp_path / "confusion.png")]
    for path in written:
        assert_png(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in written)  # no temporary files left
    assert plots.confusion_matrix(true, pred, 3).tolist() == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    csv = plots.save_history_csv(HISTORY, tmp_path / "history.csv").read_text().splitlines()
    assert csv[0] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,lr,seconds" and len(csv) == 4
    with pytest.raises(utils.UserError, match="nothing to plot"):
        plots.plot_history([], tmp_path / "empty.png", "empty")


def test_epoch_axis_has_whole_epochs_even_for_one_epoch():
    import matplotlib.pyplot as plt
    for epochs in ([1], list(range(1, 52))):
        fig, ax = plt.subplots()
        ax.plot(epochs, epochs, "o")
        plots.epoch_axis(ax)
        ticks = ax.get_xticks()
        plt.close(fig)
        assert all(float(tick).is_integer() for tick in ticks)
        assert any(epochs[0] <= tick <= epochs[-1] for tick in ticks)


@pytest.mark.parametrize("num_classes,count", [(3, 23_510_339), (10, 23_524_682)])
def test_resnet_cifar_parameter_count(num_classes, count):
    model = ResNet50Cifar(num_classes)
    assert sum(p.numel() for p in model.parameters()) == count
    biases = [m.bias.numel() for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.bias is not None]
    assert biases == [256, 512, 1024, 2048]  # only the projection shortcuts have a bias


def test_resnet_cifar_shapes_and_backward():
    torch.manual_seed(0)
    model = ResNet50Cifar(10)
    x = torch.randn(2, 3, 32, 32)
    shapes = {}
    out = model.relu(model.bn1(model.conv1(x)))
    shapes["stem"] = out.shape[1:]
    for name in ("layer1", "layer2", "layer3", "layer4"):
        out = getattr(model, name)(out)
        shapes[name] = out.shape[1:]
    assert shapes == {"stem": (64, 32, 32), "layer1": (256, 32, 32), "layer2": (512, 16, 16), "layer3": (1024, 8, 8),
                      "layer4": (2048, 4, 4)}
    assert model.layer2[0].conv2.stride == (2, 2) and model.layer2[0].conv1.stride == (1, 1)  # stride on the 3x3 (v1.5)
    assert all(block.downsample is None for block in model.layer3[1:])  # identity shortcuts where shapes match
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.logsumexp(1).mean().backward()
    assert model.conv1.weight.grad is not None and model.fc.weight.grad.abs().sum() > 0


def test_three_class_subset(tiny_data):
    images, labels = utils.load_data("train", tiny_data, utils.parse_classes("airplane,automobile,bird"))
    assert images.dtype == torch.uint8 and tuple(images.shape) == (36, 3, 32, 32)
    assert torch.bincount(labels).tolist() == [12, 12, 12]
    assert len(utils.validation_indices(labels, 2, seed=0)) == 6


def test_three_class_end_to_end(tiny_data, tmp_path, capsys, fixed_speed):
    # fixed_speed: no timing of VGG16 at batch 128 and 500 (most of this test's time), and the figures' second
    # evaluation takes the same path as the training's, so the check for a "warning" cannot depend on a timing race
    out = tmp_path / "three-class"
    argv = ["three-class", "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1", "--models", "vgg16-course",
            "--val-per-class", "2", "--device", "cpu"]
    reports.main(argv)
    results = (out / "results.md").read_text()
    assert "1 of 20 epochs" in results and "not the report's run" in results
    assert "Shorter than the report's runs" in results
    assert "| VGG16-BN, course head (`vgg16-course`) | 33,617,987 | 30 / 6 |" in results
    for name in ("history.png", "predictions.png", "confusion.png"):
        assert_png(out / "vgg16-course" / name)
    assert (out / "vgg16-course" / "history.csv").read_text().startswith("epoch,")
    (out / "vgg16-course" / "confusion.png").unlink()
    reports.main(["figures", str(out / "vgg16-course"), "--data-dir", str(tiny_data), "--device", "cpu"])
    assert_png(out / "vgg16-course" / "confusion.png")
    assert "warning" not in capsys.readouterr().out
