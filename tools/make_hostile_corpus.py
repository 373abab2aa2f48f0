#!/usr/bin/env python3
"""Writes the hostile image corpus, tests/data/hostile/images/ (README "Untrusted input"), and the
seed corpora of the fuzz targets, tests/fuzz/corpus/<target>/ (all but torch_checkpoint, whose
seeds tools/make_hostile_bins.py writes).

Each file is small: a file that declares a huge image is a few dozen bytes with a lying header.
What every case must do is in tests/data/hostile/cases.json, asserted through the CLI by
tests/e2e/test_cli_hostile.cpp; cases that need a file system object (a FIFO, a folder named
x.png, an unreadable file, odd file names) or a video or model folder are made by that test at
run time, from the committed fixtures. Deterministic: run it again and nothing changes.

Usage: /usr/bin/python3 tools/make_hostile_corpus.py
"""
import base64
import io
import json
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


def safetensors(tensors: dict, metadata=None) -> bytes:
    """A safetensors file of float32 tensors {name: (shape, values)}."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, (shape, values) in tensors.items():
        raw = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def fuzz_seeds(images: dict) -> None:
    corpus = ROOT / "tests" / "fuzz" / "corpus"
    seeds = {name: {} for name in ("safetensors", "configs", "tokenizer_json", "tokenize", "image", "server_api",
                                   "subtitles")}
    st = seeds["safetensors"]
    st["two_tensors"] = safetensors({"a": ([2, 2], [1, 2, 3, 4]), "b": ([3], [0.5, -1, 2])}, {"format": "pt"})
    st["scalar_and_empty"] = safetensors({"s": ([], [7.0]), "e": ([0, 4], [])})
    index = json.dumps({"metadata": {"total_size": 16}, "weight_map": {"a": "model-00001-of-00001.safetensors"}})
    st["sharded"] = safetensors({"a": ([4], [1, 2, 3, 4])}) + b"\n--index--\n" + index.encode()
    data = ROOT / "tests" / "data"
    cf = seeds["configs"]
    for model in ("tiny-vit-gpt2", "tiny-blip"):
        parts = [(data / model / "config.json").read_bytes()]
        for sep, f in (("generation", "generation_config.json"), ("preprocessor", "preprocessor_config.json")):
            if (data / model / f).exists():
                parts.append(f"\n--{sep}--\n".encode() + (data / model / f).read_bytes())
        cf[model] = b"".join(parts)
    cf["shapes_small"] = (ROOT / "models" / "shapes-small" / "config.json").read_bytes()
    tj = seeds["tokenizer_json"]
    tj["bpe"] = (data / "tokenizer" / "bpe" / "json" / "tokenizer.json").read_bytes()
    tj["wordlevel"] = (data / "tokenizer" / "wordlevel" / "tokenizer.json").read_bytes()
    tj["wordpiece"] = ((data / "tokenizer" / "wordpiece" / "tokenizer.json").read_bytes() + b"\n--config--\n" +
                       (data / "tokenizer" / "wordpiece" / "tokenizer_config.json").read_bytes())
    tj["shapes_small"] = (ROOT / "models" / "shapes-small" / "tokenizer.json").read_bytes()
    tk = seeds["tokenize"]
    for i, text in enumerate(["a small red cross", "Hello, world! It's 42 o'clock.", "caf\u00e9 \u65e5\u672c \U0001F600",
                              "  tabs\tand\nnew lines  ", "<|endoftext|> [CLS] x [SEP]"]):
        for selector in range(3):
            tk[f"text{i}_{selector}"] = bytes([selector | (4 if i % 2 else 0)]) + text.encode()
    tk["invalid_utf8"] = b"\0abc\xff\xfe"
    im = seeds["image"]
    for name in ("upright.png", "upright.bmp", "upright.webp", "progressive.jpg", "exif_orientation_6.jpg",
                 "palette_transparency.png", "gray_16bit.png", "cmyk.jpg", "bomb_100000x100000.png", "truncated.jpg"):
        im["decode_" + name.replace(".", "_")] = bytes([2 * (len(name) % 6)]) + images[name]
    im["ppm"] = b"\0P6\n4 2\n255\n" + bytes(range(24))
    im["tiff"] = b"\0" + encoded(upright().resize((6, 4)), "TIFF")
    for i, (w, h, ow, oh) in enumerate([(1, 1, 7, 3), (300, 2, 3, 300), (37, 23, 224, 224), (224, 224, 32, 32)]):
        im[f"resize{i}"] = bytes([1]) + struct.pack("<HHHH", w - 1, h - 1, ow - 1, oh - 1) + bytes(range(97))
    sa = seeds["server_api"]
    url = "data:image/png;base64," + base64.b64encode(images["one_pixel.png"]).decode()
    chat = {"model": "x", "stream": True, "stream_options": {"include_usage": True}, "max_tokens": 8, "num_beams": 2,
            "messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "a picture of"},
                                                      {"type": "image_url", "image_url": {"url": url}}]}]}
    sa["chat"] = b"\0" + json.dumps(chat).encode()
    sa["chat_sampling"] = b"\0" + json.dumps({"messages": chat["messages"], "temperature": 0.7, "n": 2}).encode()
    sa["base64"] = b"\1" + b"hello world, \xff\x00 bytes"
    sa["data_url"] = b"\2" + url.encode()
    sa["data_url_remote"] = b"\2https://example.com/x.png"
    sa["header_png"] = b"\3" + images["bomb_100000x100000.png"]
    sa["header_jpeg"] = b"\3" + images["bomb_65535x65535.jpg"]
    sa["header_tiff"] = b"\3" + images["bomb_120000x120000.tif"]
    sa["header_ppm"] = b"\3" + images["bomb_100000x100000.ppm"]
    sa["field_beams"] = b"\4num_beams\0" + b"4"
    sa["field_penalty"] = b"\4length_penalty\0" + b"1e308"
    sa["field_stopping"] = b"\4early_stopping\0" + b"\"never\""
    sa["stable_text"] = b"\5a caption \xe2\x9c"
    sb = seeds["subtitles"]
    sb["three"] = bytes([3, 5, 0, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]) + b"a red cross\0" + bytes(20) + b"a --> <b>x</b>\0"
    sb["newlines"] = bytes([2, 6, 1, 2, 3, 4, 5, 6, 7, 8, 6]) + b"line one\r\nline two\n\n3\0" + bytes(12)
    for target, files in seeds.items():
        d = corpus / target
        d.mkdir(parents=True, exist_ok=True)
        for old in d.iterdir():
            old.unlink()
        for name, content in files.items():
            (d / name).write_bytes(content)
    print(f"wrote the seed corpora of {len(seeds)} fuzz targets to {corpus.relative_to(ROOT)}")


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

    fuzz_seeds({p.name: p.read_bytes() for p in OUT.iterdir()})
    total = sum(p.stat().st_size for p in OUT.iterdir())
    print(f"wrote {len(list(OUT.iterdir()))} files, {total} bytes, to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
