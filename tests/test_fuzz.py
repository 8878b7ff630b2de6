"""Fuzz: random bytes and random request rows into the image decoder and the pyfunc's input
parsing. The only acceptable failure is a clear ValueError (ImageDecodeError is one); any other
exception, a hang or a crash fails the test. Bounded examples so it stays fast."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from integrations.pyfunc_model import _blobs
from vistune.data.imageio import ImageDecodeError, decode_rgb

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _png(w: int = 4, h: int = 3) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _decode_or_clear_error(data: bytes) -> None:
    try:
        arr = decode_rgb(data, max_pixels=1 << 20)
    except ImageDecodeError as exc:
        assert str(exc)
        return
    assert isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] == 3 and arr.dtype == np.uint8


@FUZZ
@given(st.binary(max_size=4096))
def test_decode_rgb_random_bytes(data):
    _decode_or_clear_error(data)


@FUZZ
@given(
    st.sampled_from(
        [
            b"\x89PNG\r\n\x1a\n",
            b"\xff\xd8\xff\xe0",
            b"GIF89a",
            b"BM",
            b"RIFF\x00\x00\x00\x00WEBP",
            b"II*\x00",
            b"MM\x00*",
        ]
    ),
    st.binary(max_size=2048),
)
def test_decode_rgb_random_bytes_behind_real_magic(magic, rest):
    _decode_or_clear_error(magic + rest)


@FUZZ
@given(st.integers(min_value=0, max_value=len(_png()) - 1), st.binary(min_size=1, max_size=8))
def test_decode_rgb_corrupted_png(pos, patch):
    good = bytearray(_png())
    good[pos : pos + len(patch)] = patch
    _decode_or_clear_error(bytes(good[: max(len(_png()), pos + len(patch))]))


cells = st.one_of(
    st.none(),
    st.text(max_size=64),
    st.binary(max_size=64),
    st.integers(),
    st.floats(),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", max_size=64),
)


@FUZZ
@given(
    st.lists(st.sampled_from(["image_b64", "image", "path", "pixels", "x"]), min_size=1, max_size=3, unique=True),
    st.lists(cells, min_size=1, max_size=9),
)
def test_pyfunc_input_parsing_random_rows(columns, values):
    rows = [
        values[i : i + len(columns)] + [None] * max(0, len(columns) - len(values[i : i + len(columns)]))
        for i in range(0, len(values), len(columns))
    ]
    frame = pd.DataFrame(rows, columns=columns)
    try:
        blobs = _blobs(frame)
    except ValueError as exc:
        assert str(exc)
        return
    assert len(blobs) == len(frame) and all(isinstance(b, bytes) for b in blobs)
    for blob in blobs:
        _decode_or_clear_error(blob)


@FUZZ
@given(st.binary(max_size=1024))
def test_pyfunc_base64_of_random_bytes(data):
    blobs = _blobs(pd.DataFrame({"image_b64": [base64.b64encode(data).decode("ascii")]}))
    assert blobs == [data]
    _decode_or_clear_error(blobs[0])
