"""Data-parallel training over several processes launched by torchrun: what train.py needs of torch.distributed.

    torchrun --nproc_per_node 2 train.py ...     # 2 processes ("ranks"), each on its own share of every epoch

Each rank holds a whole copy of the model and trains it on its own images; DistributedDataParallel averages
the gradients over the ranks after every backward pass, so all copies take the same step. Without torchrun
nothing here starts a process group: `python train.py` runs as one process, as it always did.
"""
import contextlib
import os
import warnings

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import utils
from course import speed
from course.cli import UserError


def launched() -> bool:
    """Whether torchrun started this process (it sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def rank() -> int:
    """This process's number, 0 to world_size() - 1; 0 without torchrun."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """How many processes train together; 1 without torchrun."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the one that prints and writes files."""
    return rank() == 0


def say(*args, **kwargs) -> None:
    """print, on rank 0 only: the other ranks do the same work and would repeat every line."""
    if is_main():
        print(*args, **kwargs, flush=True)


def launcher() -> str:
    """The command that starts this process's kind of run: 'python', or 'torchrun --nnodes 1 --nproc_per_node 2'."""
    if world_size() == 1:
        return "python"
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", world_size()))
    return f"torchrun --nnodes {world_size() // per_node} --nproc_per_node {per_node}"


def rank_device(name: str | None) -> torch.device:
    """speed.pick_device's choice; under torchrun on CUDA, the GPU of this process's LOCAL_RANK (one GPU a rank)."""
    device = speed.pick_device(name)
    if not launched() or device.type != "cuda":
        return device
    if device.index is not None and int(os.environ["WORLD_SIZE"]) > 1:
        raise UserError(f"--device {name} names one GPU, but under torchrun each process takes the GPU of its "
                               "LOCAL_RANK: pass --device cuda (or leave it out).")
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if local_rank >= torch.cuda.device_count():
        raise UserError(f"LOCAL_RANK {local_rank}, but this machine has {torch.cuda.device_count()} GPU(s): "
                               "start at most one process per GPU (torchrun --nproc_per_node).")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    return device


@contextlib.contextmanager
def process_group(device: torch.device):
    """Join torchrun's process group for the block: NCCL on CUDA, gloo on CPU. Nothing without torchrun, or when a
    caller (experiments/reports.py) already joined."""
    if not launched() or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
        dist.barrier()  # leave together: rank 0 may still be validating and saving the last epoch
    finally:
        dist.destroy_process_group()


def lost(error: RuntimeError) -> bool:
    """Whether `error` says that another process went away (gloo: 'Connection closed by peer'; NCCL: DistError)."""
    return isinstance(error, dist.DistError) or "closed by peer" in str(error) or "reset by peer" in str(error)


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """Each of `values` added up over the ranks (e.g. correct predictions and images seen in an epoch)."""
    if world_size() == 1:
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.tolist()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`model` under DistributedDataParallel when in a process group; itself otherwise."""
    if not dist.is_initialized():
        return model
    # speed.MatmulConv1x1's weights (O, I, 1, 1) in channels_last get gradients whose strides differ from theirs
    # on the size-1 dimensions only: the same order in memory, so DDP's copy into its buckets costs nothing extra.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


class ShardedBatches(utils.Batches):
    """This rank's share of every epoch's training batches, dealt as DistributedSampler deals them.

    One permutation per epoch from `generator`, the same on every rank (all seed it alike), padded with its own
    first images to a multiple of the world size W, then dealt in turn: rank r takes places r, r + W, r + 2W, ...
    So at each step the W ranks together train on the W * batch_size images that one process with the global batch
    would, and all ranks' last batches have the same size. Crops, flips and cutout come from a generator of the
    rank's own, seeded afresh each epoch from `generator`: its state, the same on every rank, is all a resumed run
    needs to repeat exactly what an uninterrupted one does.
    """

    def __init__(self, images, labels, batch_size: int, device, seed: int, cutout: int, rank: int, world_size: int):
        super().__init__(images, labels, batch_size, device, train=True, seed=seed, cutout=cutout)
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        shard = -(-len(self.labels) // self.world_size)
        return -(-shard // self.batch_size)

    def __iter__(self):
        n = len(self.labels)
        order = torch.randperm(n, generator=self.generator)
        epoch_seed = int(torch.randint(2**62, (), generator=self.generator))
        draws = torch.Generator().manual_seed(epoch_seed + self.rank)  # this rank's crops, flips and cutout
        order = torch.cat([order, order[:(-n) % self.world_size]])
        shard = order[self.rank::self.world_size].to(self.images.device)
        for start in range(0, len(shard), self.batch_size):
            index = shard[start:start + self.batch_size]
            images = utils.augment(self.images[index], draws)
            if self.cutout:
                images = utils.cutout(images, self.cutout, draws)
            yield utils.normalize(images, self.mean, self.std, self.channels_last), self.labels[index]
