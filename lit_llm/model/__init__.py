"""Plain PyTorch, no Lightning and no files: the GPT (gpt.py), text generation around it (generation.py),
Hugging Face weight mappings (hf.py) and int8 quantization (quantize.py)."""
