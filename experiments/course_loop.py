"""The course's own loop, as a whole-process baseline for `python main.py`'s speed.

    python -m experiments.course_loop --data-dir data/cifar10-split     # then time: python main.py --no-pretrained

What the course's notebook did: the data set held as uint8 arrays (torchvision's CIFAR10 does that), each image
turned into a PIL image and through torchvision's transforms by a DataLoader, a ResNet-50 from random weights in
fp32 NCHW, Adam at lr 1e-3, batch 100, one epoch with the step lines, then the test accuracy. The same data reading
(but decoded on every run, as the notebook did: no cache), model and loops as main.py, so that a timing of the two
whole processes compares the speed paths and the cache.
"""
import argparse

import torch
import torch.nn as nn

import utils
from course import cli, models, speed
from course.loops import EVAL_BATCH_SIZE, accuracy_line, evaluate, train_one_epoch
from experiments.bench import course_loader


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Train a model from random weights for one epoch the course's "
                                     "way (PIL transforms, DataLoader, fp32 NCHW, Adam 1e-3) and test it.")
    parser.add_argument("--data-dir", help="DIR/train/<class>/ and DIR/test/<class>/, or DIR/cifar-10-batches-py "
                        "(default: download into data/)")
    parser.add_argument("--model", choices=list(models.MODELS), default="resnet50", help="default: resnet50")
    parser.add_argument("--batch-size", type=cli.positive_int, default=100, help="default: 100, as the course")
    args = parser.parse_args(argv)
    device = speed.pick_device()
    speed.seed_everything(0)
    classes = utils.CIFAR10_CLASSES
    # decoded on every run (cache=False), as the course's notebook did
    train_set = utils.load_data("train", args.data_dir, classes, cache=False)
    test_set = utils.load_data("test", args.data_dir, classes, cache=False)
    train_data = course_loader(*train_set, args.batch_size, device, True)
    test_data = course_loader(*test_set, EVAL_BATCH_SIZE, device, False)
    model = models.build_model(args.model, len(classes)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train_one_epoch(model, train_data, optimizer, nn.CrossEntropyLoss(), device, 1, 1, config=speed.COURSE_WAY)
    print(accuracy_line(evaluate(model, test_data, device, speed.COURSE_WAY, fold=False).accuracy))


if __name__ == "__main__":
    cli.run_cli(main)
