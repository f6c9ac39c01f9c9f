"""JPEG decoding on the run's device (``trainer.decode_on_device``): an option for image datasets on a GPU.

The default path (unchanged) decodes and augments each image with PIL in the loader's worker processes. With
``trainer.decode_on_device=true`` the workers only read the files' bytes; the main process decodes each batch with
``torchvision.io.decode_jpeg(..., device=<the run's device>)`` (nvJPEG on a GPU) and applies the same training
transform there, image by image, on tensors (random resized crop, flip, float conversion, normalisation):

    EncodedImages(split)        the split's files as raw bytes (+ label, and the crop box where the dataset has one)
    DeviceDecodingLoader(...)   a DataLoader over them, decoding and transforming each batch on ``device``

It changes the numbers (another decoder and resampler, and the crops drawn from the main process's generator, which
checkpoints save, so resume stays exact), so it is part of the run's identity at any value but its default. A file
that is no JPEG (PNG, ...) is decoded on the CPU (``decode_image``) and moved; the reduced-scale decoding of
``dataset.fast_decode`` has no GPU counterpart (nvJPEG decodes at full size). Evaluation keeps the CPU path.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms import v2

from harness.data.transforms import ToMode
from harness.errors import ConfigError

JPEG_MAGIC = (0xFF, 0xD8)


class EncodedImages(Dataset):
    """An :class:`~harness.data.images.ImageListDataset`'s files as undecoded bytes: ``(bytes, label, box)``."""

    def __init__(self, split):
        if not hasattr(split, "paths"):
            raise ConfigError("trainer.decode_on_device=true needs an image dataset read from files (not in memory)")
        self.split, self.labels = split, split.labels

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i):
        box = self.split.boxes[i] if self.split.boxes is not None else None
        return read_file(self.split.paths[i]), int(self.labels[i]), box


def collate_encoded(samples):
    data, labels, boxes = zip(*samples)
    return list(data), torch.tensor(labels, dtype=torch.long), list(boxes)


def tensor_transform(transform: v2.Compose) -> tuple:
    """(read mode, invert, the transform without its PIL-only steps): the same random crop, flip, conversion and
    normalisation, applied to a decoded uint8 tensor."""
    mode, invert, ops = ImageReadMode.RGB, False, []
    for op in transform.transforms:
        if isinstance(op, ToMode):
            mode = ImageReadMode.GRAY if op.mode in ("L", "1") else ImageReadMode.RGB
            invert = op.invert
        elif not isinstance(op, v2.ToImage):
            ops.append(op)
    return mode, invert, v2.Compose(ops)


class DeviceDecodingLoader:
    """Yields ``(images on device, labels)``: each batch of bytes decoded on ``device`` and transformed there."""

    def __init__(self, loader, transform: v2.Compose, device: torch.device):
        self.loader, self.device = loader, torch.device(device)
        self.mode, self.invert, self.transform = tensor_transform(transform)

    def __len__(self) -> int:
        return len(self.loader)

    def decode(self, data: list) -> list:
        jpeg = [i for i, d in enumerate(data) if d.numel() > 1 and tuple(d[:2].tolist()) == JPEG_MAGIC]
        out = [None] * len(data)
        if jpeg:
            decoded = decode_jpeg([data[i] for i in jpeg], mode=self.mode, device=self.device)
            for i, img in zip(jpeg, decoded):
                out[i] = img
        for i, d in enumerate(data):  # PNG and the rest: torchvision's CPU decoder, then the device
            if out[i] is None:
                out[i] = decode_image(d, mode=self.mode).to(self.device, non_blocking=True)
        return out

    def __iter__(self):
        for data, labels, boxes in self.loader:
            images = []
            for img, box in zip(self.decode(data), boxes):
                if box is not None:  # (left, top, right, bottom) in pixels of the full image
                    left, top, right, bottom = (int(round(v)) for v in box)
                    img = img[:, top:bottom, left:right]
                if self.invert:
                    img = 255 - img
                images.append(self.transform(img))
            yield torch.stack(images), labels
