"""The `lit-llm` command: a table of commands (main.py), one module per command, and the LightningCLI
base (base.py) that the language-model (lm.py) and classifier (classify.py) CLIs share."""
