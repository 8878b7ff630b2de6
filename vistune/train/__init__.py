"""Fine-tuning: the loop, batch augmentation, strategies, mixing, schedule, DDP, EMA, attacks."""
