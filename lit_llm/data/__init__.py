"""The data path: corpus -> documents -> tokenizer -> token shards -> (B, T+1) batches."""

from lit_llm.data.datamodule import TextDataModule
from lit_llm.data.prepare import PrepareConfig, PreparedData, prepare

__all__ = ["PrepareConfig", "PreparedData", "TextDataModule", "prepare"]
