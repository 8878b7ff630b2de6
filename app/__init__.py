"""vistune's front door: the CLI, serving and what users run."""
