#!/usr/bin/env python3
"""Writes the hostile image corpus, tests/data/hostile/images/ (README "Untrusted input").

Each file is small: a file that declares a huge image is a few dozen bytes with a lying header.
What every case must do is in tests/data/hostile/cases.json, asserted through the CLI by
tests/e2e/test_cli_hostile.cpp; cases that need a file system object (a FIFO, a folder named
x.png, an unreadable file, odd file names) or a video or model folder are made by that test at
run time, from the committed fixtures. Deterministic: run it again and nothing changes.

Usage: /usr/bin/python3 tools/make_hostile_corpus.py
"""
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "hostile" / "images"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, depth: int = 8, color: int = 2, idat: bytes = b"") -> bytes:
    """A PNG whose IHDR says width x height, with `idat` (default: a few rows' worth) and an IEND."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    if not idat:
        idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def upright() -> Image.Image:
    """48x32, four flat quadrants of different colours and a bar: every flip and turn differs."""
    a = np.zeros((32, 48, 3), np.uint8)
    a[:16, :24] = (220, 30, 30)
    a[:16, 24:] = (30, 200, 40)
    a[16:, :24] = (30, 40, 220)
    a[16:, 24:] = (240, 230, 40)
    a[4:8, 4:44] = (250, 250, 250)
    return Image.fromarray(a)


def save(name: str, data: bytes) -> None:
    (OUT / name).write_bytes(data)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        old.unlink()
    rng = np.random.default_rng(14)
    up = upright()
    save("upright.png", encoded(up, "PNG"))
    png = encoded(up, "PNG")
    jpg = encoded(up, "JPEG", quality=95)

    # Empty and cut short.
    save("zero_byte.png", b"")
    save("truncated.png", png[: len(png) // 2])
    save("truncated.jpg", jpg[: len(jpg) // 2])
    save("signature_only.png", png[:8])
    save("soi_only.jpg", b"\xff\xd8\xff")
    save("text.png", b"this is not an image, only text with a .png name\n")
    save("jpeg_named.png", jpg)  # the content decides, not the name
    # IHDR says 64x64 but the data holds only part of one row: libpng must fail, not pad.
    save("short_idat.png", png_declaring(64, 64, idat=zlib.compress(b"\0" + b"\x80" * 30)))
    # A complete-looking PNG whose IDAT is not zlib data.
    save("garbage_idat.png", png_declaring(16, 16, idat=b"\x13\x37" * 20))

    # Headers that declare sizes the file does not back (decompression bombs).
    save("bomb_100000x100000.png", png_declaring(100000, 100000))
    save("bomb_max_u32.png", png_declaring(0xFFFFFFFF, 0xFFFFFFFF))
    save("zero_width.png", png_declaring(0, 16))
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 65535, 65535, 3) + b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    save("bomb_65535x65535.jpg", b"\xff\xd8" + sof + b"\xff\xda\x00\x02\xff\xd9")
    bmp_info = struct.pack("<IiiHHIIiiII", 40, 200000, 200000, 1, 24, 0, 0, 2835, 2835, 0, 0)
    save("bomb_200000x200000.bmp", b"BM" + struct.pack("<IHHI", 54 + 12, 0, 0, 54) + bmp_info + b"\0" * 12)
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0\0\0\0" + (16383).to_bytes(3, "little") + (16383).to_bytes(3, "little")
    save("bomb_16384x16384.webp", b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x)
    save("bomb_100000x100000.ppm", b"P6\n# a lying header\n100000 100000\n255\n" + b"\0" * 30)
    tiff = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 2)
    tiff += struct.pack("<HHII", 256, 4, 1, 120000) + struct.pack("<HHII", 257, 4, 1, 120000) + b"\0\0\0\0"
    save("bomb_120000x120000.tif", tiff)

    # Valid images that must caption (what PIL + transformers accept).
    save("one_pixel.png", encoded(Image.new("RGB", (1, 1), (200, 100, 50)), "PNG"))
    wide = np.zeros((20, 20000, 3), np.uint8)
    wide[:, :, 0] = (np.arange(20000) // 100 * 37 % 256)[None, :]
    wide[:10, :, 2] = 200
    save("strip_20000x20.png", encoded(Image.fromarray(wide), "PNG"))
    tall = Image.fromarray(np.tile(np.linspace(0, 255, 20, dtype=np.uint8)[None, :, None], (20000, 1, 3)))
    save("strip_20x20000.png", encoded(tall, "PNG"))
    a16 = (np.asarray(up, np.uint16)[:, :, 0] * 257).astype(">u2")
    save("gray_16bit.png", encoded(Image.fromarray(a16.astype(np.uint16), "I;16"), "PNG"))
    rgb16 = png_declaring(8, 8, depth=16, color=2,
                          idat=zlib.compress(b"".join(b"\0" + bytes(rng.integers(0, 256, 48, dtype=np.uint8)) for _ in range(8))))
    save("rgb_16bit.png", rgb16)
    save("cmyk.jpg", encoded(up.convert("CMYK"), "JPEG", quality=95))
    pal = up.convert("P", palette=Image.ADAPTIVE, colors=8)
    save("palette_transparency.png", encoded(pal, "PNG", transparency=0))
    save("rgba.png", encoded(up.convert("RGBA"), "PNG"))
    save("gray_alpha.png", encoded(up.convert("LA"), "PNG"))
    save("grayscale.jpg", encoded(up.convert("L"), "JPEG", quality=95))
    save("progressive.jpg", encoded(up, "JPEG", quality=95, progressive=True))
    save("upright.bmp", encoded(up, "BMP"))
    save("upright.webp", encoded(up, "WEBP", lossless=True))

    # EXIF orientations 2-8: the stored pixels are the upright image under the inverse of the
    # orientation's transform, so that applying the orientation (PIL's ImageOps.exif_transpose,
    # as transformers' image loading does) gives upright.png again.
    inverse = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
               6: Image.ROTATE_90, 7: Image.TRANSVERSE, 8: Image.ROTATE_270}
    for k, op in inverse.items():
        exif = Image.Exif()
        exif[0x0112] = k
        save(f"exif_orientation_{k}.jpg", encoded(up.transpose(op), "JPEG", quality=95, exif=exif.tobytes()))

    # Animations: transformers takes the first frame.
    frames = [Image.new("RGB", (24, 16), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    save("animated.gif", encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0))
    save("animated.webp", encoded(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True))

    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
