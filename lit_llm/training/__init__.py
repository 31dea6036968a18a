"""Training with Lightning: the LightningModule (module.py), its objectives and optimizer recipe, exact
resume, crash-safe checkpoints, loggers, callbacks, fine-tuning sources, and the one module that touches
Lightning's private names (lightning_internals.py)."""
