"""Subscribers to a run's events: the memory log, terminal progress, wandb."""
