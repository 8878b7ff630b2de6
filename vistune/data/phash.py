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


BRUTE_FORCE_BELOW = 4096  # fewer hashes: the all-pairs scan is as fast and simpler


def pairs_within(hashes: np.ndarray, max_distance: int, chunk: int = 1024) -> list[tuple[int, int, int]]:
    """All (i, j, distance) with i < j and Hamming distance <= max_distance, in i-then-j order.

    Small sets (or radii of 16 bits and more): brute force over uint64 XOR + popcount in chunks of
    `chunk` rows. Larger sets: multi-index hashing (pigeonhole), exact as well: cut the 64 bits into
    `max_distance + 1` bands; two hashes within the radius differ in at most `max_distance` bands, so
    they agree exactly on at least one, and only pairs sharing a band value are compared. The
    all-pairs scan is O(N^2) (100,000 hashes: 5e9 comparisons and a chunk x N buffer of 800 MB);
    this one is linear while band buckets stay small (measured in benchmarks/scale.py).
    """
    h = np.asarray(hashes, dtype=np.uint64)
    if max_distance < 0 or len(h) < 2:
        return []
    if len(h) < BRUTE_FORCE_BELOW or max_distance >= 16:
        return _brute_force(h, max_distance, chunk)
    bounds = np.linspace(0, HASH_BITS, max_distance + 2).astype(np.uint64)
    codes = np.sort(np.concatenate([
        _same_band_pairs((h >> lo) & np.uint64((1 << int(hi - lo)) - 1), h, max_distance)
        for lo, hi in zip(bounds[:-1], bounds[1:])]))  # i * N + j, sorted: i-then-j order
    codes = codes[np.r_[True, codes[1:] != codes[:-1]]] if len(codes) else codes  # (np.unique hashes: slower)
    i, j = codes // len(h), codes % len(h)
    return list(zip(i.tolist(), j.tolist(), np.bitwise_count(h[i] ^ h[j]).astype(int).tolist()))


def _same_band_pairs(key: np.ndarray, h: np.ndarray, max_distance: int) -> np.ndarray:
    """Codes i * n + j (i < j) of the rows with the same `key` whose hashes are within the radius.

    Candidates are compared as they are made, one offset within the sorted buckets at a time, so
    memory stays O(N + pairs found) even when buckets are large (low-entropy hashes)."""
    n = len(key)
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    out = []
    pos = np.flatnonzero(sorted_key[1:] == sorted_key[:-1])  # rows whose next row is in their group
    step = 1
    while len(pos):
        a, b = order[pos], order[pos + step]
        near = np.bitwise_count(h[a] ^ h[b]) <= max_distance
        if near.any():
            out.append(np.minimum(a[near], b[near]).astype(np.int64) * n + np.maximum(a[near], b[near]))
        step += 1
        pos = pos[pos + step < n]
        pos = pos[sorted_key[pos + step] == sorted_key[pos]]
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _brute_force(h: np.ndarray, max_distance: int, chunk: int) -> list[tuple[int, int, int]]:
    out: list[tuple[int, int, int]] = []
    for start in range(0, len(h), chunk):
        block = h[start : start + chunk]
        dist = np.bitwise_count(block[:, None] ^ h[None, :])
        ii, jj = np.nonzero(dist <= max_distance)
        ii = ii + start
        keep = jj > ii
        for i, j in zip(ii[keep].tolist(), jj[keep].tolist()):
            out.append((i, j, int(dist[i - start, j])))
    return out
