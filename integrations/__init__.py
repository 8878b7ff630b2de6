"""Adapters to MLflow (tracking, registry, pyfunc), Great Expectations and DVC files; the core never imports them."""
