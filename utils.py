"""The data: what main.py and train.py need besides the device, the model and the loops.

The data path: every split is decoded once into a uint8 tensor (N, 3, 32, 32), and an image folder's
decoded copy kept in the user's cache folder for the next run (1 to 3 s to load, not 20 s to decode).
`Batches` then shuffles it, applies the random crop and flip as batched tensor
operations on the training device, and normalizes. No per-image PIL work in
the training loop, which on a 2-core CPU would steal time from the model.
"""
import contextlib
import hashlib
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from course.cli import UserError, atomic_file, user_cache

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}
DEFAULT_DATA_ROOT = Path(__file__).resolve().parent / "data"
# a --help text shared by every script, so that the flag means one thing everywhere
CLASSES_HELP = "comma-separated subset of CIFAR-10 classes, e.g. airplane,automobile,bird (default: all ten)"


# ----------------------------------------------------------------------- data

def parse_classes(text: str | None) -> tuple[str, ...]:
    """'airplane,bird' -> ('airplane', 'bird'); None -> all ten CIFAR-10 classes."""
    if not text:
        return CIFAR10_CLASSES
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in CIFAR10_CLASSES]
    if unknown or not names:
        raise UserError(f"unknown class name(s) {', '.join(unknown) or '(none given)'} in --classes. "
                        f"Choose from: {', '.join(CIFAR10_CLASSES)} (comma-separated, no spaces needed).")
    if len(set(names)) != len(names):
        raise UserError(f"--classes lists a class twice: {text}")
    return names


def list_image_folder(folder: Path) -> list[tuple[Path, int]]:
    """(path, CIFAR-10 label) of every image in folder/<class>/, in a fixed order."""
    class_dirs = sorted(p for p in folder.iterdir() if p.is_dir())
    unknown = [p.name for p in class_dirs if p.name not in CIFAR10_CLASSES]
    if unknown or not class_dirs:
        raise UserError(f"{folder} should hold one folder per CIFAR-10 class ({', '.join(CIFAR10_CLASSES)}); "
                        f"found {', '.join(unknown) if unknown else 'none'}.")
    items = [(path, CIFAR10_CLASSES.index(class_dir.name))
             for class_dir in class_dirs for path in sorted(class_dir.iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES]
    if not items:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {folder}.")
    return items


def read_image(path: Path) -> np.ndarray:
    """Decode one CIFAR-10 image file into uint8 (32, 32, 3); an empty, damaged or wrong-size file is a UserError."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except OSError as error:  # PIL's errors on bad content (not an image, truncated) are OSErrors too
        if error.filename:  # the file system's: permission denied, ...
            reason = error.strerror
        elif isinstance(error, UnidentifiedImageError):
            reason = "the file is empty" if path.stat().st_size == 0 else "it is not an image"
        else:
            reason = f"it is damaged or truncated ({error})"
        raise UserError(f"cannot read image {path}: {reason}. Remove or replace the file, then run the same "
                        "command again.") from None
    if array.shape != (32, 32, 3):
        raise UserError(f"{path} is {array.shape[1]}x{array.shape[0]}; CIFAR-10 images are 32x32.")
    return array


def image_cache(folder: Path, items: list[tuple[Path, int]]) -> tuple[Path, str]:
    """The cache file of an image folder's decoded copy, and a key that changes when any image is changed, added
    or removed (its name, label, size and modification time)."""
    key = hashlib.sha256()
    for path, label in items:
        stat = path.stat()
        key.update(f"{path.name}/{label}/{stat.st_size}/{stat.st_mtime_ns}\n".encode())
    name = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]  # one file per folder, replaced
    return user_cache("images", f"{name}.npz"), key.hexdigest()


def _decode(items: list[tuple[Path, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Decode the images of list_image_folder's items into uint8 (N, 32, 32, 3), with their labels."""
    return np.stack([read_image(path) for path, _ in items]), np.asarray([label for _, label in items], dtype=np.int64)


def _read_image_folder(folder: Path, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """folder/<class>/* as uint8 images (N, 32, 32, 3) and labels, from the cache or decoded (cache=False: no cache)."""
    items = list_image_folder(folder)
    if not cache:
        return _decode(items)
    place, key = image_cache(folder, items)
    try:  # a cache of other images, or a damaged one (np.load checks each array's CRC-32), is not believed
        with np.load(place, allow_pickle=False) as saved:
            if saved["key"] == key:
                return saved["images"], saved["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass
    images, labels = _decode(items)
    with contextlib.suppress(OSError), atomic_file(place) as f:  # a read-only or full cache folder: decoded next time
        np.savez(f, images=images, labels=labels, key=key)
    return images, labels


def _read_batches(folder: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Read torchvision's cifar-10-batches-py pickles (plain arrays and lists) into uint8 images and labels."""
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    images, labels = [], []
    for name in names:
        try:
            with open(folder / name, "rb") as f:
                batch = pickle.load(f, encoding="latin1")
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(np.asarray(batch["labels"], dtype=np.int64))
        except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError) as error:
            raise UserError(f"cannot read {folder / name} ({type(error).__name__}: {error}). "
                            f"The copy of CIFAR-10 in {folder} is incomplete or damaged: "
                            "delete it and download it again, or point --data-dir at a good copy.") from None
    return np.concatenate(images), np.concatenate(labels)


PREPARED_COPIES = ("cifar10-split", ".")  # under data/: prepare_data.py's output, then torchvision's download
ARCHIVE_PLACES = ("../shared/data/cifar10-train-jpg.tar.gz", "data/cifar10-train-jpg.tar.gz")  # offline archive


def find_prepared_copy() -> Path | None:
    """A copy of CIFAR-10 with both splits already under data/ (cifar10-split/ or cifar-10-batches-py/), if any."""
    for name in PREPARED_COPIES:
        folder = DEFAULT_DATA_ROOT / name
        if (folder / "cifar-10-batches-py").is_dir() or ((folder / "train").is_dir() and (folder / "test").is_dir()):
            return folder.resolve()
    return None


def find_archive() -> str | None:
    """Where this machine's offline archive of the training images is, relative to the project folder, if anywhere."""
    return next((place for place in ARCHIVE_PLACES if (DEFAULT_DATA_ROOT.parent / place).is_file()), None)


def offline_route() -> str:
    """The commands that prepare the offline copy on this machine, as typed from the project folder; '' if none."""
    if (DEFAULT_DATA_ROOT / "cifar10-jpg" / "train").is_dir():
        return "python prepare_data.py"
    archive = find_archive()
    if archive is None:
        return ""
    return f"tar xzf {archive} -C data && python prepare_data.py"


def _download(root: Path) -> None:
    """Download CIFAR-10 with torchvision (checksummed, with a progress bar) unless it is already there."""
    import torchvision

    try:
        torchvision.datasets.CIFAR10(root=str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError: no network, or a blocked host
        route = offline_route()
        offline = (f"This machine has an offline copy: run `{route}` in {DEFAULT_DATA_ROOT.parent}, then run the "
                   "same command again (it finds data/cifar10-split by itself)." if route else
                   "Without internet, pass --data-dir DIR pointing to an offline copy: DIR/cifar-10-batches-py "
                   "(torchvision format) or DIR/train/<class>/ and DIR/test/<class>/ image folders.")
        raise UserError(f"could not download CIFAR-10 into {root} ({error}). {offline}") from None


def load_split(split: str, data_dir: str | Path | None = None, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """All images of CIFAR-10's 'train' or 'test' split as (uint8 N x 32 x 32 x 3, labels).

    Without data_dir, torchvision downloads CIFAR-10 into data/. With it, data_dir
    holds either cifar-10-batches-py/ or train/ and test/ image folders.
    """
    if data_dir is None:
        if not (DEFAULT_DATA_ROOT / "cifar-10-batches-py").is_dir():  # download (and checksum) once, not per split
            _download(DEFAULT_DATA_ROOT)
        return _read_batches(DEFAULT_DATA_ROOT / "cifar-10-batches-py", split == "train")
    root = Path(data_dir)
    if (root / "cifar-10-batches-py").is_dir():
        return _read_batches(root / "cifar-10-batches-py", split == "train")
    if (root / split).is_dir():
        return _read_image_folder(root / split, cache)
    raise UserError(f"no CIFAR-10 '{split}' split found in {root}: expected {root / 'cifar-10-batches-py'} "
                    f"(torchvision format) or {root / split}/<class>/ image folders. Check --data-dir.")


def select_classes(images: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Keep only the given classes and relabel them 0..k-1 in the order given."""
    if classes == CIFAR10_CLASSES:
        return images, labels
    wanted = [CIFAR10_CLASSES.index(name) for name in classes]
    keep = np.isin(labels, wanted)
    relabel = {old: new for new, old in enumerate(wanted)}
    return images[keep], np.asarray([relabel[int(label)] for label in labels[keep]], dtype=np.int64)


def to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, H, W, 3) array -> uint8 (N, 3, H, W) tensor, plus int64 labels."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def load_data(split: str, data_dir, classes: tuple[str, ...], cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One split, restricted to `classes`, as uint8 image and int64 label tensors (cache: see _read_image_folder)."""
    images, labels = select_classes(*load_split(split, data_dir, cache), classes)
    if len(labels) == 0:
        raise UserError(f"the {split} split has no images of {', '.join(classes)}.")
    return to_tensors(images, labels)


def validation_indices(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """A fixed, class-balanced choice of `per_class` indices from each class."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        if len(members) <= per_class:
            raise UserError(f"class {CIFAR10_CLASSES[label]} has only {len(members)} training images; cannot hold "
                            f"out {per_class} of them: choose a smaller --val-per-class.")
        chosen.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    return torch.cat(chosen).sort().values


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """RandomCrop(32, padding=4) and RandomHorizontalFlip on a uint8 batch, per image."""
    n, _, h, w = images.shape
    padded = F.pad(images, (4, 4, 4, 4))  # zero padding, as torchvision's RandomCrop
    dy = torch.randint(0, 9, (n, 1), generator=generator, device="cpu").to(images.device)
    dx = torch.randint(0, 9, (n, 1), generator=generator, device="cpu").to(images.device)
    rows = (dy + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    cropped = padded[batch, channel, rows, cols]
    flip = torch.rand(n, generator=generator, device="cpu").to(images.device) < 0.5
    return torch.where(flip[:, None, None, None], cropped.flip(3), cropped)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout (DeVries and Taylor, 2017): grey out one size x size square per image, centred anywhere on it.

    The square is filled with the data set's mean colour, i.e. zero after normalization.
    """
    n, _, h, w = images.shape
    cy = torch.randint(0, h, (n, 1, 1), generator=generator, device="cpu").to(images.device)
    cx = torch.randint(0, w, (n, 1, 1), generator=generator, device="cpu").to(images.device)
    rows = torch.arange(h, device=images.device)[None, :, None] - cy + size // 2  # 0 .. size-1 inside the square
    cols = torch.arange(w, device=images.device)[None, None, :] - cx + size // 2
    inside = (rows >= 0) & (rows < size) & (cols >= 0) & (cols < size)  # (n, h, w)
    mean = torch.tensor(MEAN, device=images.device).mul(255).round().to(images.dtype).view(1, 3, 1, 1)
    return torch.where(inside[:, None], mean, images)


def normalize(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, channels_last: bool = True) -> torch.Tensor:
    """uint8 batch -> normalized float batch, in channels_last layout unless told otherwise."""
    out = (images.float() / 255 - mean) / std
    return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


class Batches:
    """Mini-batches of (normalized images, labels) from uint8 tensors, like a DataLoader.

    train=True shuffles and augments (crop and flip, plus cutout when cutout > 0), reproducibly from the
    generator. The uint8 set (150 MB for CIFAR-10) moves to the device once; `channels_last`: the batches' layout.
    """

    def __init__(self, images, labels, batch_size: int, device, train: bool, seed: int = 0, cutout: int = 0):
        self.images = images.to(device)
        self.labels = labels.to(device)
        self.batch_size = batch_size
        self.train = train
        self.cutout = cutout
        self.channels_last = True
        self.generator = torch.Generator().manual_seed(seed)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)  # made once, not per batch
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.labels) // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator) if self.train else torch.arange(n)
        order = order.to(self.images.device)
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            images = self.images[index]
            if self.train:
                images = augment(images, self.generator)
            if self.train and self.cutout:
                images = cutout(images, self.cutout, self.generator)
            yield normalize(images, self.mean, self.std, self.channels_last), self.labels[index]
