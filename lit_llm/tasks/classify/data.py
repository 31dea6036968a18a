"""ClassificationDataModule: labelled texts from a CSV or JSONL file, split and tokenized.

Labels may be any strings; they are sorted (numerically when all are integers) and numbered, and the list
travels to the model (`--model.labels`, linked) and into its checkpoints. The train/val/test split is a
permutation seeded by `--data.split_seed`. Texts are tokenized with the tokenizer of `--model.checkpoint`
(linked here as `checkpoint`) when one is given, else with a char or BPE tokenizer trained on the training
texts; each text gets an EOS at its end (the position last-token pooling reads) and is cut to max_length.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import numpy as np
import torch
from tokenizers import Tokenizer
from torch.utils.data import DataLoader

from lit_llm.checkpoints import read_lm_checkpoint
from lit_llm.data.tokenizer import PAD, build_tokenizer, eos_id
from lit_llm.errors import LitLLMError

SPLITS = ("train", "val", "test")


def read_rows(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[str]]:
    if not path.is_file():
        raise LitLLMError(f"--data.path {path} not found (make one with `lit-llm classify make-data --out {path}`)")
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix in (".jsonl", ".json"):
        with open(path) as f:
            try:
                rows = [json.loads(line) for line in f if line.strip()]
            except json.JSONDecodeError as err:
                raise LitLLMError(f"{path}: invalid JSON on line {err.lineno}") from None
    else:
        raise LitLLMError(f"--data.path must be a .csv or .jsonl file, got {path.name}")
    if not rows:
        raise LitLLMError(f"{path} holds no rows")
    for field, option in ((text_field, "text_field"), (label_field, "label_field")):
        missing = next((i for i, row in enumerate(rows) if row.get(field) is None), None)
        if missing is not None:
            raise LitLLMError(f"row {missing + 1} of {path} has no {field!r} field; set --data.{option}")
    return [str(r[text_field]) for r in rows], [str(r[label_field]).strip() for r in rows]


def label_names(labels: list[str]) -> list[str]:
    names = set(labels)
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    n_test, n_val = round(n * test_fraction), round(n * val_fraction)
    return {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}


def checkpoint_tokenizer(path: str) -> tuple[Tokenizer, int]:
    """The tokenizer and block size of a lit_llm LM checkpoint, without building its model."""
    ckpt = read_lm_checkpoint(path)
    tokenizer_json = ckpt.get("lit_llm", {}).get("tokenizer_json")
    if tokenizer_json is None:
        raise LitLLMError(f"{path} carries no tokenizer: is it a lit_llm language-model checkpoint?")
    return Tokenizer.from_str(tokenizer_json), int(ckpt["hyper_parameters"]["block_size"])


class Texts(torch.utils.data.Dataset):
    def __init__(self, ids: list[list[int]], labels: list[int]) -> None:
        self.ids, self.labels = ids, labels

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.ids[i], self.labels[i]


class PadCollate:
    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        """{"tokens": (B, L) right-padded, "lengths": (B,), "labels": (B,)}"""
        lengths = torch.tensor([len(ids) for ids, _ in items])
        tokens = torch.full((len(items), int(lengths.max())), self.pad_id, dtype=torch.int64)
        for row, (ids, _) in enumerate(items):
            tokens[row, : len(ids)] = torch.tensor(ids)
        return {"tokens": tokens, "lengths": lengths, "labels": torch.tensor([label for _, label in items])}


class ClassificationDataModule(L.LightningDataModule):
    def __init__(
        self,
        path: str = "data/sentiment.csv",
        text_field: str = "text",
        label_field: str = "label",
        tokenizer: str = "bpe",
        vocab_size: int = 512,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 1337,
        num_workers: int = 0,
        checkpoint: str | None = None,
    ) -> None:
        """
        Args:
            path: a .csv (with a header) or .jsonl file of labelled texts.
            text_field: the column or key holding the text.
            label_field: the column or key holding the label (any string).
            tokenizer: without a checkpoint: char, bpe (trained on the training texts to vocab_size), gpt2, or
                a tokenizer.json path.
            vocab_size: target vocabulary of a trained bpe tokenizer.
            max_length: most tokens per text, EOS included (capped at the checkpoint's block size).
            batch_size: training batch.
            eval_batch_size: validation/test batch (default: batch_size).
            val_fraction: share of rows held out for validation.
            test_fraction: share of rows held out for test.
            split_seed: seed of the split's permutation.
            num_workers: DataLoader worker processes.
            checkpoint: linked from --model.checkpoint: its tokenizer is used.
        """
        super().__init__()
        if batch_size <= 0 or max_length < 2:
            raise LitLLMError("--data.batch_size must be positive and --data.max_length at least 2")
        if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise LitLLMError("--data.val_fraction must be in (0, 1), test_fraction in [0, 1), their sum below 1")
        self.path, self.text_field, self.label_field = Path(path), text_field, label_field
        self.tokenizer_spec, self.vocab_size, self.max_length = tokenizer, vocab_size, max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.num_workers, self.checkpoint = num_workers, checkpoint
        self._loaded = False

    def load(self) -> None:
        """Read, split, build the tokenizer and tokenize (once; cheap for the datasets this is made for)."""
        if self._loaded:
            return
        texts, labels = read_rows(self.path, self.text_field, self.label_field)
        self.labels = label_names(labels)
        if len(self.labels) < 2:
            raise LitLLMError(f"{self.path} has a single label ({self.labels[0]!r}); classification needs two or more")
        index = {name: i for i, name in enumerate(self.labels)}
        self.indices = split_indices(len(texts), self.val_fraction, self.test_fraction, self.split_seed)
        if not len(self.indices["train"]) or not len(self.indices["val"]):
            raise LitLLMError(f"{len(texts)} rows are too few for a train and a validation split")
        if self.checkpoint:
            self.tokenizer, block_size = checkpoint_tokenizer(self.checkpoint)
            self.max_length = min(self.max_length, block_size)
        else:
            self.tokenizer = build_tokenizer(self.tokenizer_spec, self.vocab_size,
                                             [texts[i] for i in self.indices["train"]])
        eos = eos_id(self.tokenizer)
        encoded = [e.ids[: self.max_length - 1] + [eos] for e in self.tokenizer.encode_batch(texts)]
        pad = self.tokenizer.token_to_id(PAD)
        self.collate = PadCollate(pad if pad is not None else 0)  # padding is never read (pooling uses lengths)
        self.texts = texts
        self.datasets = {split: Texts([encoded[i] for i in idx], [index[labels[i]] for i in idx])
                         for split, idx in self.indices.items()}
        self._loaded = True

    # --- facts linked to the model (each loads the data on first use) -----------------------------
    def label_list(self) -> list[str]:
        """The label names in id order, linked to --model.labels."""
        self.load()
        return self.labels

    def model_vocab_size(self) -> int:
        self.load()
        return self.tokenizer.get_vocab_size()

    def model_block_size(self) -> int:
        self.load()
        return self.max_length

    def tokenizer_json(self) -> str:
        self.load()
        return self.tokenizer.to_str()

    # --- loaders -------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        self.load()

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        data = self.datasets[split]
        if not len(data):
            raise LitLLMError(f"the {split} split is empty: set --data.{split}_fraction above 0")
        return DataLoader(data, batch_size=self.batch_size if split == "train" else self.eval_batch_size,
                          shuffle=shuffle, collate_fn=self.collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
