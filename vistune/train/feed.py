"""Training batches onto the device: where the uint8 train set lives and how each batch gets there.

- CUDA, the set fits (under `DEVICE_DATA_FRACTION` of free memory): copied to the device once; each
  epoch's index order goes over once from pinned memory and every batch is a device-side gather.
- CUDA, too large: a background thread gathers the next batch into one of two pinned buffers while
  the GPU trains on the current one; the copy runs on a side stream (double buffering), so the main
  thread never waits for the host.
- CPU: the batch is gathered straight from the (memory-mapped) arrays; no extra copies.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import torch

from vistune.models.device_policy import to_device

DEVICE_DATA_FRACTION = 0.25


def fits_on_device(nbytes: int, device: torch.device, fraction: float = DEVICE_DATA_FRACTION) -> bool:
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes < fraction * free


class PinnedPrefetch:
    """Double-buffered host->device batches for a train set kept on the host (CUDA only)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, batch_size: int, depth: int = 2) -> None:
        self.x, self.y, self.device = x, y, device
        self.bufs = [
            (
                torch.empty((batch_size, *x.shape[1:]), dtype=x.dtype).pin_memory(),
                torch.empty(batch_size, dtype=y.dtype).pin_memory(),
            )
            for _ in range(depth)
        ]
        self.copied: list[torch.cuda.Event | None] = [None] * depth  # last H2D copy out of each buffer
        self.stream = torch.cuda.Stream(device)

    def _gather(self, k: int, idx: torch.Tensor) -> int:
        done = self.copied[k]
        if done is not None:
            done.synchronize()  # this worker thread waits until buffer k's previous copy has left
        xb, yb = self.bufs[k]
        torch.index_select(self.x, 0, idx, out=xb[: len(idx)])
        torch.index_select(self.y, 0, idx, out=yb[: len(idx)])
        return len(idx)

    def _upload(self, k: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        xb, yb = self.bufs[k]
        main = torch.cuda.current_stream(self.device)
        self.stream.wait_stream(main)  # device memory handed back by earlier steps is free to reuse
        with torch.cuda.stream(self.stream):
            xd = xb[:n].to(self.device, non_blocking=True)
            yd = yb[:n].to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.copied[k] = event
        main.wait_event(event)
        xd.record_stream(main)
        yd.record_stream(main)
        return xd, yd

    def batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        depth = len(self.bufs)
        with ThreadPoolExecutor(1, thread_name_prefix="vistune-prefetch") as pool:
            nxt: Future | None = pool.submit(self._gather, 0, chunks[0]) if chunks else None
            for j in range(len(chunks)):
                n = nxt.result()
                batch = self._upload(j % depth, n)
                nxt = pool.submit(self._gather, (j + 1) % depth, chunks[j + 1]) if j + 1 < len(chunks) else None
                yield batch


class TrainFeed:
    """The uint8 train images and labels, and the batches of one epoch's index order."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        device: torch.device,
        batch_size: int,
        device_fraction: float = DEVICE_DATA_FRACTION,
    ) -> None:
        self.device = device
        self.on_device = fits_on_device(x.numel() * x.element_size(), device, device_fraction)
        self.prefetch = None
        if self.on_device:
            self.x, self.y = to_device(x, device), to_device(y, device)
        else:
            self.x, self.y = x, y
            if device.type == "cuda":
                self.prefetch = PinnedPrefetch(x, y, device, batch_size)

    def batches(self, chunks: list[torch.Tensor]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) on the device for each index chunk (CPU int64 tensors)."""
        if self.prefetch is not None:
            yield from self.prefetch.batches(chunks)
        elif self.on_device:
            flat = to_device(torch.cat(chunks), self.device) if chunks else None  # one pinned copy per epoch
            start = 0
            for c in chunks:
                idx = flat[start : start + len(c)]
                start += len(c)
                yield self.x[idx], self.y[idx]
        else:
            for c in chunks:
                yield self.x[c], self.y[c]
