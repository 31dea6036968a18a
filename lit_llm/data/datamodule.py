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

from lit_llm.data.clean import CleanConfig
from lit_llm.data.corpus import default_cache_dir
from lit_llm.data.dedup import DedupConfig
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


class TextDataModule(L.LightningDataModule):
    def __init__(
        self,
        corpus: str | list[str] = "python-stdlib",
        tokenizer: str = "bpe",
        vocab_size: int = 4096,
        block_size: int = 256,
        batch_size: int = 16,
        corpus_weights: list[float] | None = None,
        text_field: str = "text",
        val_fraction: float = 0.1,
        test_fraction: float = 0.0,
        split_seed: int = 1337,
        clean: CleanConfig = CleanConfig(),
        dedup: DedupConfig = DedupConfig(),
        shard_tokens: int = 2**28,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        seed: int = 1337,
        cache_dir: str | None = None,
        prompts: str | None = None,
    ) -> None:
        """
        Args:
            corpus: one source or a list: a text, .jsonl or .parquet file, a directory or glob of them, a
                Hugging Face dataset (save_to_disk directory, or hf:NAME[:CONFIG][:SPLIT] online), a prepared
                directory, or a built-in: python-stdlib, tinyshakespeare.
            tokenizer: char, bpe (trained to vocab_size), gpt2, or a tokenizer.json path.
            vocab_size: target vocabulary of a trained bpe tokenizer (others ignore it).
            block_size: tokens of context per sample (the model's block size is linked to it).
            batch_size: micro-batch per device.
            corpus_weights: sampling weight per corpus entry for training (default: by size).
            text_field: the text field of .jsonl/.parquet/HF records.
            val_fraction: share of documents held out for validation (the tail of a single document).
            test_fraction: share held out for `lit-llm test`.
            split_seed: seed of the document split.
            clean: cleaning steps and length filters.
            dedup: exact and near-duplicate removal.
            shard_tokens: most tokens per shard file.
            eval_batch_size: validation/test batch size (default: batch_size).
            num_workers: DataLoader worker processes.
            seed: seed of the training sample order.
            cache_dir: where prepared data is cached (default $LIT_LLM_CACHE or ~/.cache/lit_llm).
            prompts: for `predict`, a text file with one prompt per line (\\n inside a line is a newline).
        """
        super().__init__()
        for name in ("block_size", "batch_size", "vocab_size", "shard_tokens"):
            if locals()[name] <= 0:
                raise LitLLMError(f"--data.{name} must be positive, got {locals()[name]}")
        # no save_hyperparameters(): the CLI logs the whole config, and Lightning would refuse to merge
        # data.vocab_size (the BPE target) with model.vocab_size (the tokenizer's actual size)
        self.prepare_config = PrepareConfig(corpus, tokenizer, vocab_size, val_fraction, test_fraction, split_seed,
                                            text_field, clean, dedup, shard_tokens)
        if corpus_weights is not None and (len(corpus_weights) != len(self.prepare_config.corpus)
                                           or min(corpus_weights) < 0 or sum(corpus_weights) <= 0):
            raise LitLLMError("--data.corpus_weights needs one non-negative weight per corpus, not all zero")
        self.corpus_weights = corpus_weights
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

    def stream(self, split: str) -> TokenStream:
        return TokenStream(self.prepared.shards(split))

    def setup(self, stage: str) -> None:
        train = self.stream("train")
        if stage == "fit" and len(train) <= self.block_size + 1:
            raise LitLLMError(
                f"the train split has {len(train)} tokens, too few for --data.block_size {self.block_size}; "
                "use a larger corpus or a smaller block size"
            )

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        segments, weights = None, None
        if self.corpus_weights is not None:
            sources = {s["corpus"]: (s["start"], s["end"]) for s in self.prepared.meta["splits"]["train"]["sources"]}
            names = self.prepare_config.corpus
            segments = [sources.get(c, (0, 0)) for c in names]
            weights = self.corpus_weights
        data = RandomWindows(self.stream("train"), self.block_size, self.batch_size, self.seed,
                             rank, world, start=self.train_batches_consumed, segments=segments, weights=weights)
        return DataLoader(data, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def _eval_dataloader(self, split: str) -> DataLoader:
        tokens = self.stream(split)
        if len(tokens) < 2:
            raise LitLLMError(f"the {split} split is empty: set --data.{split}_fraction above 0")
        if len(tokens) <= self.block_size:
            raise LitLLMError(f"the {split} split has {len(tokens)} tokens, fewer than --data.block_size + 1 = "
                              f"{self.block_size + 1}, so no window has a full context; lower the block size or "
                              f"raise --data.{split}_fraction")
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
