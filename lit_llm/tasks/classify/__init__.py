"""Sequence classification: a Transformer (a lit_llm LM checkpoint, or from scratch) or the bag-of-embeddings
baseline, with a CSV/JSONL DataModule and `lit-llm classify` (LightningCLI) to drive them."""
