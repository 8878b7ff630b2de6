"""vistune's front door: the commands people type (`vistune ...`), apart from the tracking adapters."""
