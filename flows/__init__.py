"""Prefect flows: they order the DVC stages as tasks, retry them and publish artifacts.

Every stage runs through DVC (`dvc repro --single-item <stage>`), so a flow run and a plain
`dvc repro` share one cache and one dvc.lock: there is no second code path.
"""
