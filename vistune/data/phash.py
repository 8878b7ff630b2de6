"""Perceptual hashes (dHash, pHash) in numpy and a near-duplicate search over them.

Why: sha256 only finds byte-identical copies; a re-saved, resized or re-compressed copy of the
same photo has a different sha256 but (almost) the same perceptual hash. Hashes are 64-bit
integers; two images are near duplicates when their Hamming distance is small.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

HASH_BITS = 64


def _gray(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(img.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float64)


def _pack(bits: np.ndarray) -> int:
    return int(np.packbits(bits.astype(np.uint8).ravel()).view(">u8")[0])


def dhash(img: Image.Image) -> int:
    """Difference hash: is each pixel brighter than its right neighbour, on a 9x8 grayscale thumbnail."""
    g = _gray(img, (9, 8))
    return _pack(g[:, 1:] > g[:, :-1])


def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * x + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


_DCT32 = _dct_matrix(32)


def phash(img: Image.Image) -> int:
    """DCT hash: signs of the 8x8 lowest-frequency DCT coefficients (minus DC) vs their median."""
    g = _gray(img, (32, 32))
    coeffs = (_DCT32 @ g @ _DCT32.T)[:8, :8].ravel()
    ac = coeffs[1:]
    return _pack(np.concatenate([[False], ac > np.median(ac)]))


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def pairs_within(hashes: np.ndarray, max_distance: int, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= max_distance, in i-then-j order.

    Brute force over uint64 XOR + popcount in chunks: 10,000 hashes are 50M comparisons, well under
    a second, and memory stays at chunk x N.
    """
    h = np.asarray(hashes, dtype=np.uint64)
    out: list[tuple[int, int, int]] = []
    if max_distance < 0 or len(h) < 2:
        return out
    for start in range(0, len(h), chunk):
        block = h[start : start + chunk]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = jj > ii
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist()):
            out.append((i, j, int(dist[i - start, j])))
    return out
