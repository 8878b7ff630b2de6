"""One module per DVC stage: `run(cfg, layout)` does the work, `main(argv)` is the CLI DVC calls.

No orchestration here: Prefect lives in `flows/`, MLflow behind `integrations/`.
"""
