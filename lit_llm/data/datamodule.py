"""LightningDataModule over prepared token shards: `prepare_data` builds (or finds) them, the loaders
read them through the samplers in samplers.py, and `state_dict` holds the resume point.

The trainer decides how training data is read: with a positive `max_epochs` (an epoch fit) each epoch is
one pass over the split's windows in a new order; otherwise (max_epochs -1, a fit by steps, tokens or
time) an endless stream of random windows."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch
from torch.utils.data import DataLoader

from lit_llm.data.clean import CleanConfig
from lit_llm.data.corpus import default_cache_dir
from lit_llm.data.dedup import DedupConfig
from lit_llm.data.prepare import PrepareConfig, PreparedData, prepare
from lit_llm.data.samplers import EpochBatches, EpochWindows, RandomWindows, SequentialWindows, TokenStream
from lit_llm.errors import LitLLMError

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
        split_by: Literal["document", "position"] = "document",
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
            val_fraction: share held out for validation (documents, or the tail by position: --data.split_by).
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
            split_by: document (hold out whole documents, chosen by a seeded hash) or position (the corpus
                in order, cut at line boundaries: the last val_fraction is validation); one document always
                splits by position.
        """
        super().__init__()
        for name in ("block_size", "batch_size", "vocab_size", "shard_tokens"):
            if locals()[name] <= 0:
                raise LitLLMError(f"--data.{name} must be positive, got {locals()[name]}")
        if eval_batch_size is not None and eval_batch_size <= 0 or num_workers < 0:
            raise LitLLMError(f"--data.eval_batch_size must be positive and --data.num_workers >= 0, got "
                              f"{eval_batch_size} and {num_workers}")
        if clean.min_chars < 0 or clean.max_chars < 0:
            raise LitLLMError("--data.clean.min_chars and --data.clean.max_chars must be >= 0 (max_chars 0: no limit)")
        # no save_hyperparameters(): the CLI logs the whole config, and Lightning would refuse to merge
        # data.vocab_size (the BPE target) with model.vocab_size (the tokenizer's actual size)
        self.prepare_config = PrepareConfig(corpus, tokenizer, vocab_size, val_fraction, test_fraction, split_seed,
                                            text_field, clean, dedup, shard_tokens, split_by)
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
        self.epoch, self.epoch_batches_consumed = 0, 0  # an epoch fit's position: epoch, micro-batches of it
        self.batches_per_epoch: int | None = None  # per rank, in an epoch fit

    def prepare_once(self) -> PreparedData:
        """The prepared data: cleans, tokenizes and shards the corpus on the first call (a file lock makes
        concurrent ranks build it once), then reuses it."""
        if self._prepared is None:
            self._prepared = prepare(self.prepare_config, self.cache_dir)
        return self._prepared

    def prepare_data(self) -> None:
        self.prepare_once()

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def stream(self, split: str) -> TokenStream:
        return TokenStream(self.prepare_once().shards(split))

    def setup(self, stage: str) -> None:
        train = self.stream("train")
        if stage == "fit" and len(train) <= self.block_size + 1:
            raise LitLLMError(
                f"the train split has {len(train)} tokens, too few for --data.block_size {self.block_size}; "
                "use a larger corpus or a smaller block size"
            )

    def epoch_fit(self) -> bool:
        """Whether the trainer trains by epochs (a positive max_epochs): then the data is read in passes."""
        trainer = self.trainer
        return trainer is not None and (trainer.max_epochs or 0) > 0

    def train_dataloader(self) -> DataLoader:
        if self.epoch_fit():
            return self._epoch_dataloader()
        rank, world = self._rank_world()
        segments, weights = None, None
        if self.corpus_weights is not None:
            sources = {s["corpus"]: (s["start"], s["end"]) for s in self.prepare_once().meta["splits"]["train"]["sources"]}
            names = self.prepare_config.corpus
            segments = [sources.get(c, (0, 0)) for c in names]
            weights = self.corpus_weights
        data = RandomWindows(self.stream("train"), self.block_size, self.batch_size, self.seed,
                             rank, world, start=self.train_batches_consumed, segments=segments, weights=weights)
        return DataLoader(data, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory())

    def _epoch_dataloader(self) -> DataLoader:
        if self.corpus_weights is not None:
            raise LitLLMError("--data.corpus_weights samples the sources by weight, but an epoch fit "
                              "(--trainer.max_epochs) reads every window once per epoch: drop one of them")
        rank, world = self._rank_world()
        data = EpochWindows(self.stream("train"), self.block_size, self.batch_size, self.seed, rank, world,
                            self.trainer.accumulate_grad_batches)
        if len(data) == 0:
            raise LitLLMError(f"the train split has {data.n_windows} windows of --data.block_size + 1 tokens, fewer "
                              f"than one optimizer step takes (batch_size x devices x accumulate_grad_batches = "
                              f"{data.step_windows}); lower those or use a larger corpus")
        self.batches_per_epoch = len(data)
        epoch, start = self.epoch, self.epoch_batches_consumed
        if start >= len(data):  # saved at the end of an epoch: the next one starts
            epoch, start = epoch + 1, 0
        # each epoch's iterator draws a worker base seed: from its own generator, not the global RNG, so the
        # dropout stream does not depend on where epochs start, and a resume at an epoch's end stays exact
        return DataLoader(data, sampler=EpochBatches(len(data), epoch, start), batch_size=None,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          pin_memory=self.pin_memory(), generator=torch.Generator().manual_seed(self.seed))

    def train_tokens(self) -> int:
        """Tokens in the train split."""
        return int(self.prepare_once().meta["splits"]["train"]["tokens"])

    def epochs_done(self) -> float | None:
        """An epoch fit's passes over the data so far (whole epochs plus the share of the current one)."""
        if not self.batches_per_epoch:
            return None
        return self.epoch + self.epoch_batches_consumed / self.batches_per_epoch

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
                          batch_size=self.eval_batch_size, num_workers=self.num_workers, pin_memory=self.pin_memory())

    def pin_memory(self) -> bool:
        """Page-locked host batches on CUDA: their copy to the GPU is asynchronous."""
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

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
            if "epoch" in batch:
                self.epoch, self.epoch_batches_consumed = batch["epoch"], batch["index"] + 1
            else:
                self.train_batches_consumed = batch["index"] + 1
        return batch

    def state_dict(self) -> dict:
        """The data position (the samplers are stateless given it): per-rank micro-batches consumed, and
        in an epoch fit the epoch and its micro-batches consumed."""
        return {"train_batches_consumed": self.train_batches_consumed, "epoch": self.epoch,
                "epoch_batches_consumed": self.epoch_batches_consumed}

    def load_state_dict(self, state_dict: dict) -> None:
        self.train_batches_consumed = int(state_dict.get("train_batches_consumed", 0))
        self.epoch = int(state_dict.get("epoch", 0))
        self.epoch_batches_consumed = int(state_dict.get("epoch_batches_consumed", 0))
