"""User-facing errors: one line that names the file and the fix, no traceback at the CLI."""


class VistuneError(Exception):
    """A mistake the user can fix (bad path, bad params, bad data, missing weights offline)."""


class ConfigError(VistuneError):
    """`params.yaml` is missing, malformed or has unknown keys."""


class DataError(VistuneError):
    """The input images cannot be used as they are."""


class WeightsError(VistuneError):
    """Pretrained weights cannot be had (offline, wrong path, wrong shapes)."""
