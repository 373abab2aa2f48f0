"""ViTImageProcessor, slow (PIL) path, as transformers runs it for a pipeline input.

ref: transformers image_processing_vit.py, image_transforms.py (resize, rescale, normalize),
image_utils.py (load_image). Steps for one image:
  1. load: PIL open, EXIF orientation applied, convert("RGB") (alpha dropped, not composited)
  2. resize straight to size (height, width) with PIL `resample`, reducing_gap=None, on uint8
  3. rescale: uint8 * rescale_factor in float64, then cast to float32
  4. normalize: (x - mean) / std in float32, mean/std as float32 arrays
  5. HWC -> CHW
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from PIL import Image, ImageOps

from .config import ImageProcessorConfig


def load_image(path) -> Image.Image:
    image = Image.open(path)
    image = ImageOps.exif_transpose(image)
    return image.convert("RGB")


def resize(image: Image.Image, cfg: ImageProcessorConfig) -> np.ndarray:
    """uint8 (H, W, 3) after the processor's resize step."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if cfg.do_resize:
        h, w = cfg.size["height"], cfg.size["width"]
        image = image.resize((w, h), resample=Image.Resampling(cfg.resample), reducing_gap=None)
    return np.array(image, dtype=np.uint8)


def preprocess(image: Image.Image, cfg: ImageProcessorConfig) -> Tuple[np.ndarray, np.ndarray]:
    """Returns (pixel_values float32 (3, H, W), resized uint8 (H, W, 3))."""
    resized = resize(image, cfg)
    x = resized
    if cfg.do_rescale:
        x = (x.astype(np.float64) * cfg.rescale_factor).astype(np.float32)
    if cfg.do_normalize:
        if x.dtype != np.float32:
            x = x.astype(np.float32)
        mean = np.array(cfg.image_mean, dtype=np.float32)
        std = np.array(cfg.image_std, dtype=np.float32)
        x = (x - mean) / std
    x = np.ascontiguousarray(x.astype(np.float32).transpose(2, 0, 1))
    return x, resized
