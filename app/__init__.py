"""vistune's front door: the `vistune` command, `init`, `metrics`, batch `score`, the model card and the
gate report's rendering, and the report vocabulary they share."""
