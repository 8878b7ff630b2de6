"""Edit params.yaml in place, keeping its comments, order and layout (ruamel.yaml round-trip mode).

Only the values that change are rewritten; every other byte of the file stays as it was, so a
recipe applied twice leaves the file identical. Values are written so that PyYAML (which
`vistune.config.load_params` and DVC's params reader use) reads them back with the same type:
floats always carry a '.' (`1.0e-05`, never `1e-05`, which YAML 1.1 reads as a string), and
lists keep the file's flow style (`[0.35, 1.0]`).
"""

from __future__ import annotations

import io
from typing import Any, Iterable

from vistune.errors import ConfigError


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip
    y.preserve_quotes = True
    y.width = 4096  # never re-wrap a long line
    y.representer.add_representer(float, _represent_float)
    return y


def yaml11_float(value: float) -> str:
    """repr(value) with a '.' in the mantissa and a signed exponent, as YAML 1.1 requires."""
    text = repr(float(value))
    if text in ("inf", "-inf", "nan"):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    if "e" in text:
        mantissa, exp = text.split("e")
        mantissa = mantissa if "." in mantissa else mantissa + ".0"
        exp = exp if exp[0] in "+-" else "+" + exp
        return f"{mantissa}e{exp}"
    return text


def _represent_float(representer, value: float):
    return representer.represent_scalar("tag:yaml.org,2002:float", yaml11_float(value))


def _node_value(value: Any) -> Any:
    from ruamel.yaml.comments import CommentedSeq

    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(list(value))
        seq.fa.set_flow_style()
        return seq
    return value


def apply_settings(text: str, settings: Iterable[tuple[str, Any]], where: str = "params.yaml") -> str:
    """`text` with each `section.key` set to its value; a key the file lacks is added at the end of
    its section. Returns `text` itself when nothing changes."""
    settings = list(settings)
    if not settings:
        return text
    y = _yaml()
    try:
        doc = y.load(text)
    except Exception as exc:  # ruamel raises several parser/scanner error types
        raise ConfigError(f"{where}: not valid YAML ({exc.__class__.__name__}); fix the syntax") from None
    for key, value in settings:
        section, name = key.split(".", 1)
        if doc.get(section) is None:
            raise ConfigError(f"{where}: has no `{section}:` section; restore it (see the committed params.yaml)")
        doc[section][name] = _node_value(value)
    buf = io.StringIO()
    y.dump(doc, buf)
    return buf.getvalue()


def parse_value(text: str) -> Any:
    """A `--set key=VALUE` value as YAML 1.2 reads it (`1e-3` is a float, `[0.5, 1]` a list)."""
    return _plain(_yaml().load(text)) if text.strip() else ""


def _plain(value: Any) -> Any:
    """ruamel's scalar subclasses (which remember their spelling, e.g. `1e-3`) as plain Python values."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return float(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
