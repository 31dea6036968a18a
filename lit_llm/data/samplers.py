"""Samplers over a split's token shards.

Training batches are (B, T+1) windows at pseudo-random offsets. Sample g of the run starts at
hash(seed, g) mod (N - T), and rank r's k-th micro-batch holds samples [(k*W + r)*B, (k*W + r + 1)*B)
for world size W. So ranks read disjoint samples, the global batches are the same whatever W is (for a
fixed micro-batch B), and resuming needs only k, which the DataModule saves in the checkpoint.

An epoch fit (`--trainer.max_epochs N`) reads the split in passes instead: EpochWindows cuts it into
non-overlapping windows, shuffled per epoch by (seed, epoch), and EpochBatches hands out one epoch's
micro-batches from a resume point on.

Validation and test batches cover their split exactly once: consecutive windows of T targets, the
last one shorter and padded with target -1, dealt round-robin to ranks without padding or repeats.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, Sampler, get_worker_info

IGNORE_INDEX = -1  # the target of a position that has none (padding); the loss skips it


def sample_offsets(seed: int, sample_ids: np.ndarray, n_starts: int) -> np.ndarray:
    """splitmix64(seed, g) mod n_starts: a stateless, seekable stream of window offsets."""
    with np.errstate(over="ignore"):
        z = sample_ids.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_starts)).astype(np.int64)


class TokenStream:
    """A split's shards read as one sequence of tokens (windows may cross shard boundaries)."""

    def __init__(self, shards: list[np.ndarray]) -> None:
        self.shards = [s for s in shards if len(s)]
        self.ends = np.cumsum([len(s) for s in self.shards], dtype=np.int64)

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, start: int, n: int) -> np.ndarray:
        if len(self.shards) == 1:
            return self.shards[0][start : start + n]
        parts, i = [], int(np.searchsorted(self.ends, start, side="right"))
        while n > 0 and i < len(self.shards):
            local = start - (int(self.ends[i - 1]) if i else 0)
            part = self.shards[i][local : local + n]
            parts.append(part)
            n, start, i = n - len(part), start + len(part), i + 1
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def gather(self, starts: np.ndarray, n: int) -> np.ndarray:
        """(len(starts), n) windows; one fancy-indexing read when the split is a single shard."""
        if len(self.shards) == 1:
            return self.shards[0][starts[:, None] + np.arange(n)]
        return np.stack([self.read(int(s), n) for s in starts])


class RandomWindows(IterableDataset):
    """Endless per-rank micro-batches {"tokens": (B, T+1) int64, "sample_ids": (B,), "index": k} from
    micro-batch `start` on. With segments (token ranges of sources) and weights, each sample first draws
    its source by weight, then a window inside it."""

    def __init__(self, tokens: TokenStream | np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, start: int = 0,
                 segments: list[tuple[int, int]] | None = None, weights: list[float] | None = None) -> None:
        self.tokens = tokens if isinstance(tokens, TokenStream) else TokenStream([tokens])
        self.T, self.B, self.seed = block_size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        segments = segments or [(0, len(self.tokens))]
        keep = [i for i, (a, b) in enumerate(segments) if b - a > block_size]  # a window needs T+1 tokens
        self.segments = np.array([segments[i] for i in keep], dtype=np.int64)
        w = np.array([weights[i] for i in keep] if weights else [b - a for a, b in self.segments], dtype=np.float64)
        self.cum_weights = np.cumsum(w / w.sum())

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        m = k * self.world_size + self.rank  # global micro-batch index
        ids = np.arange(m * self.B, (m + 1) * self.B, dtype=np.int64)
        if len(self.segments) == 1:
            seg = np.zeros(len(ids), dtype=np.int64)
        else:  # a second, independent hash stream picks the source
            u = sample_offsets(self.seed ^ 0x5EED, ids, 2**53) / 2**53
            seg = np.minimum(np.searchsorted(self.cum_weights, u, side="right"), len(self.segments) - 1)
        a, b = self.segments[seg, 0], self.segments[seg, 1]
        offsets = a + sample_offsets(self.seed, ids, 2**62) % (b - a - self.T)
        windows = self.tokens.gather(offsets, self.T + 1)
        return {"tokens": torch.from_numpy(windows.astype(np.int64)), "sample_ids": torch.from_numpy(ids),
                "index": k}  # a Python int: reading the resume point needs no tensor read

    def __iter__(self):
        info = get_worker_info()
        k = self.start + (info.id if info else 0)
        step = info.num_workers if info else 1  # the loader takes workers round-robin: order is kept
        while True:
            yield self.batch(k)
            k += step


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of an epoch's n windows: a permutation drawn from (seed, epoch) alone, so a resume redraws it."""
    return np.random.default_rng([seed, epoch]).permutation(n).astype(np.int64)


class EpochWindows(Dataset):
    """An epoch fit's training windows. Window i is tokens [i*T, i*T + T + 1): consecutive windows share
    their boundary token (T+1 tokens give T targets), so each epoch predicts every token of the split but
    the first exactly once, bar the tail that fills no whole window. Each epoch shuffles the windows
    (`epoch_order`); global micro-batch m = k*W + r (rank r's k-th of the epoch, world size W) holds
    windows order[m*B : (m+1)*B]. An epoch is a whole number of optimizer steps: every rank gets the same
    number of micro-batches, a multiple of `accumulate`, and the windows left over (fewer than one global
    step's B*W*accumulate) are skipped that epoch; the shuffle leaves out others next epoch.
    Items are (epoch, k): {"tokens": (B, T+1) int64, "sample_ids": window numbers (B,), "index": k, "epoch"}."""

    def __init__(self, tokens: TokenStream | np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, accumulate: int = 1) -> None:
        self.tokens = tokens if isinstance(tokens, TokenStream) else TokenStream([tokens])
        self.T, self.B, self.seed = block_size, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.n_windows = max(0, (len(self.tokens) - 1) // block_size)
        self.step_windows = batch_size * world_size * accumulate  # windows per optimizer step, all ranks
        self.batches_per_epoch = self.n_windows // self.step_windows * accumulate  # per rank
        self._order: tuple[int, np.ndarray] | None = None  # the latest epoch's order (each worker its own)

    def __len__(self) -> int:
        return self.batches_per_epoch

    def order(self, epoch: int) -> np.ndarray:
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, epoch_order(self.seed, epoch, self.n_windows))
        return self._order[1]

    def __getitem__(self, item: tuple[int, int]) -> dict:
        epoch, k = item
        m = k * self.world_size + self.rank
        ids = self.order(epoch)[m * self.B : (m + 1) * self.B]
        windows = self.tokens.gather(ids * self.T, self.T + 1)
        return {"tokens": torch.from_numpy(windows.astype(np.int64)), "sample_ids": torch.from_numpy(ids),
                "index": k, "epoch": epoch}  # Python ints: reading the resume point needs no tensor read


class EpochBatches(Sampler):
    """The items (epoch, k), k = 0 .. n-1, of the current epoch, which Lightning sets before each epoch
    (`set_epoch`). A resumed fit starts at (epoch, start): its first epoch yields k = start .. n-1, while
    len() stays n, as Lightning counts the batches it restored as already run."""

    def __init__(self, n_batches: int, epoch: int = 0, start: int = 0) -> None:
        self.n, self.epoch = n_batches, epoch
        self.resume_epoch, self.start = epoch, start

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        epoch = self.epoch  # read when iteration starts (workers prefetch right away)
        first = self.start if epoch == self.resume_epoch else 0
        return iter([(epoch, k) for k in range(first, self.n)])


class SequentialWindows(Dataset):
    """Windows [i*T, i*T + T + 1) over a split, i = rank, rank + W, ...; the last window may be short."""

    def __init__(self, tokens: TokenStream | np.ndarray, block_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.tokens = tokens if isinstance(tokens, TokenStream) else TokenStream([tokens])
        self.T = block_size
        n_windows = max(0, -(-(len(self.tokens) - 1) // block_size))  # ceil((N-1)/T): every token but the first
        self.windows = list(range(rank, n_windows, world_size))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = self.windows[i] * self.T
        chunk = torch.from_numpy(self.tokens.read(start, self.T + 1).astype(np.int64))
        x = torch.zeros(self.T, dtype=torch.int64)
        y = torch.full((self.T,), IGNORE_INDEX, dtype=torch.int64)
        n = len(chunk) - 1
        x[:n], y[:n] = chunk[:-1], chunk[1:]
        return {"input": x, "target": y}
