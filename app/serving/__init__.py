"""Serving a registered model over HTTP, following a registry alias without a restart."""
