"""lit_llm: GPT training and scaling studies with PyTorch Lightning, LightningCLI and W&B."""

__version__ = "0.1.0"
