"""LightningDataModule over prepared token shards.

Training batches are (B, T+1) windows at pseudo-random offsets. Sample g of the run starts at
hash(seed, g) mod (N - T), and rank r's k-th micro-batch holds samples [(k*W + r)*B, (k*W + r + 1)*B)
for world size W. So ranks read disjoint samples, the global batches are the same whatever W is (for a
fixed micro-batch B), and resuming needs only k, which the DataModule saves in the checkpoint.

Validation and test batches cover their split exactly once: consecutive windows of T targets, the
last one shorter and padded with target -1, dealt round-robin to ranks without padding or repeats.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from lit_llm.data.corpus import default_cache_dir
from lit_llm.data.prepare import PrepareConfig, PreparedData, prepare
from lit_llm.errors import LitLLMError

IGNORE_INDEX = -1


def sample_offsets(seed: int, sample_ids: np.ndarray, n_starts: int) -> np.ndarray:
    """splitmix64(seed, g) mod n_starts: a stateless, seekable stream of window offsets."""
    with np.errstate(over="ignore"):
        z = sample_ids.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(n_starts)).astype(np.int64)


class RandomWindows(IterableDataset):
    """Endless per-rank micro-batches {"tokens": (B, T+1) int64, "sample_ids": (B,)} from micro-batch start."""

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, start: int = 0) -> None:
        self.tokens, self.T, self.B, self.seed = tokens, block_size, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start
        self.n_starts = len(tokens) - block_size  # a window needs T+1 tokens

    def batch(self, k: int) -> dict[str, torch.Tensor]:
        m = k * self.world_size + self.rank  # global micro-batch index
        ids = np.arange(m * self.B, (m + 1) * self.B, dtype=np.int64)
        offsets = sample_offsets(self.seed, ids, self.n_starts)
        windows = self.tokens[offsets[:, None] + np.arange(self.T + 1)]
        return {"tokens": torch.from_numpy(windows.astype(np.int64)), "sample_ids": torch.from_numpy(ids),
                "index": torch.tensor(k)}

    def __iter__(self):
        info = get_worker_info()
        k = self.start + (info.id if info else 0)
        step = info.num_workers if info else 1  # the loader takes workers round-robin: order is kept
        while True:
            yield self.batch(k)
            k += step


class SequentialWindows(Dataset):
    """Windows [i*T, i*T + T + 1) over a split, i = rank, rank + W, ...; the last window may be short."""

    def __init__(self, tokens: np.ndarray, block_size: int, rank: int = 0, world_size: int = 1) -> None:
        self.tokens, self.T = tokens, block_size
        n_windows = max(0, -(-(len(tokens) - 1) // block_size))  # ceil((N-1)/T): every token but the first
        self.windows = list(range(rank, n_windows, world_size))

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        start = self.windows[i] * self.T
        chunk = torch.from_numpy(self.tokens[start : start + self.T + 1].astype(np.int64))
        x = torch.zeros(self.T, dtype=torch.int64)
        y = torch.full((self.T,), IGNORE_INDEX, dtype=torch.int64)
        n = len(chunk) - 1
        x[:n], y[:n] = chunk[:-1], chunk[1:]
        return {"input": x, "target": y}


class TextDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus: str = "python-stdlib",
        tokenizer: str = "bpe",
        vocab_size: int = 4096,
        block_size: int = 256,
        batch_size: int = 16,
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 1337,
        cache_dir: str | None = None,
        prompts: str | None = None,
    ) -> None:
        """
        Args:
            corpus: a text file, directory, glob, prepared directory, or built-in: python-stdlib, tinyshakespeare.
            tokenizer: char, bpe (trained to vocab_size), gpt2, or a tokenizer.json path.
            vocab_size: target vocabulary of a trained bpe tokenizer (others ignore it).
            block_size: tokens of context per sample (the model's block size is linked to it).
            batch_size: micro-batch per device.
            val_fraction: share of the corpus held out for validation (the tail of a single document).
            test_fraction: share held out for `lit-llm test`.
            eval_batch_size: validation/test batch size (default: batch_size).
            num_workers: DataLoader worker processes.
            seed: seed of the training sample order.
            cache_dir: where prepared data is cached (default $LIT_LLM_CACHE or ~/.cache/lit_llm).
            prompts: for `predict`, a text file with one prompt per line (\\n inside a line is a newline).
        """
        super().__init__()
        for name in ("block_size", "batch_size", "vocab_size"):
            if locals()[name] <= 0:
                raise LitLLMError(f"--data.{name} must be positive, got {locals()[name]}")
        # no save_hyperparameters(): the CLI logs the whole config, and Lightning would refuse to merge
        # data.vocab_size (the BPE target) with model.vocab_size (the tokenizer's actual size)
        self.options = dict(corpus=corpus, tokenizer=tokenizer, vocab_size=vocab_size, block_size=block_size,
                            batch_size=batch_size, val_fraction=val_fraction, test_fraction=test_fraction)
        self.prepare_config = PrepareConfig(corpus, tokenizer, vocab_size, val_fraction, test_fraction)
        self.block_size, self.batch_size = block_size, batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
        self.prompts = prompts
        self._prepared: PreparedData | None = None
        self.train_batches_consumed = 0  # per-rank micro-batches already trained on (resume point)

    @property
    def prepared(self) -> PreparedData:
        """The prepared data, built on first use (a file lock makes concurrent ranks build it once)."""
        if self._prepared is None:
            self._prepared = prepare(self.prepare_config, self.cache_dir)
        return self._prepared

    @property
    def model_vocab_size(self) -> int:
        """The tokenizer's vocabulary size, linked to --model.vocab_size."""
        return self.prepared.vocab_size

    def prepare_data(self) -> None:
        self.prepared  # noqa: B018 (builds the cache)

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str) -> None:
        train = self.prepared.tokens("train")
        if stage == "fit" and len(train) <= self.block_size + 1:
            raise LitLLMError(
                f"the train split has {len(train)} tokens, too few for --data.block_size {self.block_size}; "
                "use a larger corpus or a smaller block size"
            )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        data = RandomWindows(self.prepared.tokens("train"), self.block_size, self.batch_size, self.seed,
                             rank, world, start=self.train_batches_consumed)
        return DataLoader(data, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def _eval_dataloader(self, split: str) -> DataLoader:
        tokens = self.prepared.tokens(split)
        if len(tokens) < 2:
            raise LitLLMError(f"the {split} split is empty: set --data.{split}_fraction above 0")
        rank, world = self._rank_world()
        return DataLoader(SequentialWindows(tokens, self.block_size, rank, world),
                          batch_size=self.eval_batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_dataloader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        if not self.prompts:
            raise LitLLMError("predict needs --data.prompts FILE (one prompt per line)")
        try:
            lines = Path(self.prompts).read_text().splitlines()
        except OSError as err:
            raise LitLLMError(f"cannot read --data.prompts {self.prompts}: {err.strerror}") from None
        prompts = [line.replace("\\n", "\n") for line in lines if line.strip()]
        return DataLoader(prompts, batch_size=None)

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        trainer = self.trainer
        if trainer is not None and trainer.training and "index" in batch:
            self.train_batches_consumed = int(batch["index"]) + 1
        return batch

    def state_dict(self) -> dict:
        return {"train_batches_consumed": self.train_batches_consumed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train_batches_consumed = int(state_dict.get("train_batches_consumed", 0))
