"""What check.py and the grader build to test each blank: one table for both, so that they agree.

A probe is (class, constructor arguments, attribute or "", input shape). The blocks are probed with
channel widths that occur nowhere in ResNet-50 (3, 64, 128, 256, 512, 1024, 10 classes), so that a
number written where a name belongs shows; block_same also with equal in and out channels, so that a
shortcut that skips its projection when the widths match shows. No torch here: the grader's own
process imports this file.
"""
BLOCK, MODEL = "ResidualBlock", "ResNet50"
PROBES: dict[str, list[tuple[str, tuple, str, tuple[int, ...]]]] = {
    "block_downsample": [(BLOCK, (12, 4, 20, True), "", (2, 12, 6, 6)),
                         (BLOCK, (20, 6, 20, True), "", (2, 20, 5, 5)),
                         (BLOCK, (28, 14, 36, True), "", (2, 28, 7, 7))],
    "block_same": [(BLOCK, (12, 4, 20, False), "", (2, 12, 5, 5)),
                   (BLOCK, (20, 6, 20, False), "", (2, 20, 6, 6)),
                   (BLOCK, (36, 14, 28, False), "", (2, 36, 7, 7))],
    "stem_conv": [(MODEL, (10,), "layer1", (2, 3, 32, 32))],
    "stem_pool": [(MODEL, (10,), "layer1", (2, 3, 32, 32))],
    "layer2": [(MODEL, (10,), "layer2", (2, 64, 8, 8))],
    "layer3": [(MODEL, (10,), "layer3", (2, 256, 4, 4))],
    "layer4": [(MODEL, (10,), "layer4", (2, 512, 2, 2))],
    "avgpool": [(MODEL, (10,), "avgpool", (2, 1024, 2, 2))],
    "fc": [(MODEL, (10,), "fc", (2, 1024)), (MODEL, (7,), "fc", (2, 1024))],
}
NETWORK_WIDTHS = {3, 10, 64, 128, 256, 512, 1024}  # the channel counts of the network (a test keeps probes off them)


def label(probe: tuple) -> str:
    """`ResidualBlock(12, 4, 20, True)` or `ResNet50(10).layer1`, for messages and notes."""
    cls, args, attribute, _ = probe
    return f"{cls}({', '.join(map(str, args))})" + (f".{attribute}" if attribute else "")


def block_parameters(in_channels: int, middle: int, out: int) -> int:
    """Parameters of a bottleneck block: three conv + batch-norm pairs and a 1x1 projection shortcut."""
    def conv(c_in: int, c_out: int, kernel: int) -> int:
        return c_in * c_out * kernel * kernel + c_out + 2 * c_out  # weights, bias, batch-norm's scale and shift
    return conv(in_channels, middle, 1) + conv(middle, middle, 3) + conv(middle, out, 1) + conv(in_channels, out, 1)
