"""Lightning callbacks: throughput/MFU, the final validation, the run summary and W&B facts, generated
samples and predictions, the progress bar, pruning."""
