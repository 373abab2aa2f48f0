#!/usr/bin/python3
"""Writes the image-preprocessing fixtures under tests/data/image/ from an independent reference.

The reference is Pillow itself (Image.resize, the "slow" path transformers uses) and numpy for the
rescale/normalize steps of ViTImageProcessor, written out the way transformers'
image_transforms.rescale/normalize compute them (transformers itself is not installed here).

Run with Debian's /usr/bin/python3 (Pillow 9.4, numpy):  /usr/bin/python3 tools/make_image_fixtures.py
Outputs (all lossless PNG unless noted):
  src_*.png                      source RGB images
  resize/<src>_<W>x<H>_<filter>.png   PIL resize results, every filter, several sizes
  preprocess_<name>.f32           float32 little-endian (3, H, W) pixel_values
  exif6.jpg, exif6_pil.png        a JPEG with EXIF orientation 6 and PIL's exif_transpose'd RGB
  manifest.json                  what each file is
"""
import io
import json
import pathlib

import numpy as np
import PIL
from PIL import Image, ImageOps

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "image"
FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}


def save_png(arr, path):
    Image.fromarray(arr, "RGB").save(path, optimize=True, compress_level=9)


def noise_image(rng, w, h):
    # Full-range noise biased to the extremes: negative lobes (bicubic, lanczos) overshoot and must
    # clip at 0 and 255 in both passes.
    levels = np.array([0, 0, 255, 255, 17, 128, 240], dtype=np.uint8)
    return levels[rng.integers(0, len(levels), size=(h, w, 3))]


def edges_image(rng, w, h):
    img = np.zeros((h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    img[...] = (40, 90, 160)
    img[:, 150:] = (200, 170, 30)  # vertical colour edge
    img[190:, :] = (12, 12, 12)  # horizontal edge near the bottom
    img[20:80, 30:120] = (255, 255, 255)  # sharp white block
    img[40:60, 50:100] = (0, 0, 0)
    img[100:180, 10:90] = np.where(((xx[100:180, 10:90] + yy[100:180, 10:90]) % 2 == 0)[..., None],
                                   np.uint8(255), np.uint8(0))  # 1-px checkerboard
    cells = ((xx[100:190, 110:200] // 3 + yy[100:190, 110:200] // 3) % 2 == 1)
    img[100:190, 110:200] = np.where(cells[..., None], np.array([255, 0, 0], np.uint8),
                                     np.array([0, 0, 255], np.uint8))  # 3-px red/blue checks
    img[5:195, 250] = (255, 255, 0)  # 1-px vertical line
    img[150, 210:295] = (0, 255, 255)  # 1-px horizontal line
    diag = (np.abs(xx - (yy * 3 // 2 + 60)) <= 0)
    img[diag] = (255, 0, 255)  # thin diagonal
    img[10:22, 160:200] = rng.integers(0, 256, size=(12, 40, 3), dtype=np.uint8)  # noisy patch
    return img


def hamming_weights(in_size, out_size, c54, c46):
    """Pillow's fixed-point Hamming weights as a dense (out, in) matrix, with the window constants
    given as parameters. Used only to pick an input; the fixture itself is PIL's output."""
    import math
    scale = in_size / out_size
    fs = max(scale, 1.0)
    w = np.zeros((out_size, in_size), dtype=np.int64)
    for xx in range(out_size):
        c = (xx + 0.5) * scale
        lo = max(int(c - fs + 0.5), 0)
        hi = min(int(c + fs + 0.5), in_size)
        k = []
        for x in range(lo, hi):
            t = abs((x - c + 0.5) / fs)
            if t == 0.0:
                k.append(1.0)
            elif t >= 1.0:
                k.append(0.0)
            else:
                t *= math.pi
                k.append(math.sin(t) / t * (c54 + c46 * math.cos(t)))
        total = sum(k)
        for i, v in enumerate(k):
            v /= total
            w[xx, lo + i] = int(v * (1 << 22) - 0.5) if v < 0 else int(v * (1 << 22) + 0.5)
    return w


def hamming_constant_rows(rng, in_size=37, out_size=15, count=3):
    """Rows whose Hamming downscale differs by one level depending on whether the window constants
    are 0.54f/0.46f (float, as Pillow writes them) or 0.54/0.46 (double)."""
    wf = hamming_weights(in_size, out_size, float(np.float32(0.54)), float(np.float32(0.46)))
    wd = hamming_weights(in_size, out_size, 0.54, 0.46)
    assert (wf != wd).any()
    found = []
    while len(found) < count:
        rows = rng.integers(0, 256, size=(200000, in_size), dtype=np.int64)
        a = np.clip((rows @ wf.T + (1 << 21)) >> 22, 0, 255)
        b = np.clip((rows @ wd.T + (1 << 21)) >> 22, 0, 255)
        found.extend(rows[(a != b).any(axis=1)][: count - len(found)])
    rows = np.array(found, dtype=np.uint8)
    img = np.stack([rows, rows[:, ::-1], 255 - rows], axis=-1)  # (count, in_size, 3)
    # The selection must agree with PIL, or the emulation above is wrong.
    pil = np.asarray(Image.fromarray(img, "RGB").resize((out_size, count), Image.Resampling.HAMMING))
    ref = np.clip((rows.astype(np.int64) @ wf.T + (1 << 21)) >> 22, 0, 255)
    alt = np.clip((rows.astype(np.int64) @ wd.T + (1 << 21)) >> 22, 0, 255)
    assert (pil[..., 0] == ref).all() and (pil[..., 0] != alt).any()
    return img


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "resize").mkdir(exist_ok=True)
    rng = np.random.default_rng(20240607)
    sources = {
        "noise37x23": noise_image(rng, 37, 23),
        "tall5x97": noise_image(rng, 5, 97),
        "edges300x200": edges_image(rng, 300, 200),
        # Pins Pillow's float window constants in the Hamming filter (see hamming_constant_rows).
        "hamming37x3": hamming_constant_rows(rng),
    }
    # (width, height) targets: downscale, upscale, down-x/up-y, one axis unchanged.
    targets = {
        "noise37x23": [(15, 16), (41, 27), (19, 33), (37, 10), (25, 23)],
        "tall5x97": [(3, 41), (7, 100), (2, 110)],
        "edges300x200": [(75, 50), (80, 210), (64, 200)],
        "hamming37x3": [(15, 3)],
    }
    only_filters = {"hamming37x3": ["hamming"]}
    manifest = {"pillow_version": PIL.__version__, "sources": {}, "resize": [], "preprocess": []}
    for name, arr in sources.items():
        save_png(arr, OUT / f"src_{name}.png")
        manifest["sources"][name] = f"src_{name}.png"
        im = Image.fromarray(arr, "RGB")
        for (w, h) in targets[name]:
            for fname, fid in FILTERS.items():
                if fname not in only_filters.get(name, FILTERS):
                    continue
                out = np.asarray(im.resize((w, h), resample=fid, reducing_gap=None))
                rel = f"resize/{name}_{w}x{h}_{fname}.png"
                save_png(out, OUT / rel)
                manifest["resize"].append(
                    {"source": name, "width": w, "height": h, "resample": int(fid), "file": rel})

    # ViTImageProcessor slow path on the edges image: resize (PIL), rescale, normalize, to CHW.
    # ref: transformers image_transforms.rescale / normalize.
    cases = [
        ("edges_bilinear24_half", "edges300x200", 2, 24, 24, [0.5] * 3, [0.5] * 3),
        ("edges_bilinear24_imagenet", "edges300x200", 2, 24, 24,
         [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("noise_bicubic12x9_imagenet", "noise37x23", 3, 9, 12,
         [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ]
    for case, src, resample, h, w, mean, std in cases:
        im = Image.fromarray(sources[src], "RGB")
        x = np.array(im.resize((w, h), resample=resample, reducing_gap=None))  # uint8 HWC
        x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)
        x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
        assert x.dtype == np.float32
        x = np.ascontiguousarray(x.transpose(2, 0, 1))
        rel = f"preprocess_{case}.f32"
        x.astype("<f4").tofile(OUT / rel)
        manifest["preprocess"].append({
            "name": case, "source": src, "resample": resample, "height": h, "width": w,
            "rescale_factor": 1 / 255, "image_mean": mean, "image_std": std, "file": rel})

    # A JPEG carrying EXIF orientation 6 (display rotated 90 degrees clockwise), decoded the way
    # HF's load_image does: PIL open, exif_transpose, convert("RGB").
    base = Image.fromarray(sources["edges300x200"][:24:, :40:].copy(), "RGB")
    base = base.resize((40, 24), Image.Resampling.NEAREST)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    base.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    (OUT / "exif6.jpg").write_bytes(buf.getvalue())
    ref = ImageOps.exif_transpose(Image.open(OUT / "exif6.jpg")).convert("RGB")
    assert ref.size == (24, 40), ref.size
    save_png(np.asarray(ref), OUT / "exif6_pil.png")
    manifest["exif"] = {"jpeg": "exif6.jpg", "expected": "exif6_pil.png"}

    lines = [json.dumps({k: v for k, v in manifest.items() if k not in ("resize", "preprocess")})[:-1]]
    for key in ("resize", "preprocess"):
        lines.append(f', "{key}": [\n' + ",\n".join(json.dumps(e) for e in manifest[key]) + "\n]")
    (OUT / "manifest.json").write_text("".join(lines) + "}\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(manifest['resize'])} resize cases, {total} bytes under {OUT}")


if __name__ == "__main__":
    main()
