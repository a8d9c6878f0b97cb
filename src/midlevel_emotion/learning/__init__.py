"""The networks of Figure 2, the training loop, precision, checkpoints and the scores (Pearson r, the linear map)."""
