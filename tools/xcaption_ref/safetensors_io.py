"""Minimal reader/writer for the safetensors format, without the `safetensors` package.

Layout (ref: huggingface/safetensors README, "Format"):
  8 bytes   little-endian u64 N = size of the JSON header in bytes
  N bytes   UTF-8 JSON object: {name: {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, ...}
            plus an optional "__metadata__": {str: str}; offsets are relative to the byte after the
            header; the writer pads the header with spaces to a multiple of 8 bytes
  rest      the tensor bytes, little-endian, row-major, contiguous, no gaps

Arrays are numpy arrays. BF16 has no numpy dtype: it is read as float32 (exact widening) and
written from float32 with round-to-nearest-even, which is what torch's `.to(torch.bfloat16)` does.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

# safetensors dtype name -> (numpy dtype used for storage, bytes per element)
_STORAGE = {
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),
    "F64": (np.dtype("<f8"), 8),
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("?"), 1),
}


def bf16_bits_to_f32(bits: np.ndarray) -> np.ndarray:
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> uint16 bfloat16 bit patterns, round to nearest, ties to even (NaN kept quiet)."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounding = ((u >> 16) & 1) + 0x7FFF
    out = ((u + rounding) >> 16).astype(np.uint16)
    nan = np.isnan(np.asarray(x, dtype=np.float32))
    out[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)
    return out


def round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16, returned as float32."""
    return bf16_bits_to_f32(f32_to_bf16_bits(x))


class SafetensorsError(ValueError):
    pass


def read_header(path: Path) -> Tuple[dict, int]:
    """Returns (header dict, byte offset of the data section)."""
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise SafetensorsError(f"{path}: file shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", head)
        raw = f.read(n)
        if len(raw) != n:
            raise SafetensorsError(f"{path}: header length {n} exceeds the file")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not valid JSON: {e}") from e
    return header, 8 + n


def load(path, as_float32: bool = True) -> Tuple[Dict[str, np.ndarray], Dict[str, str], Dict[str, str]]:
    """Reads every tensor of a safetensors file.

    Returns (tensors, dtypes, metadata): tensors by name as numpy arrays (floating types widened to
    float32 when `as_float32`, BF16 always decoded to float32), the stored dtype name of each tensor,
    and the `__metadata__` map (empty when absent).
    """
    path = Path(path)
    header, data_start = read_header(path)
    blob = path.read_bytes()[data_start:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors: Dict[str, np.ndarray] = {}
    dtypes: Dict[str, str] = {}
    for name, info in header.items():
        dtype = info["dtype"]
        if dtype not in _STORAGE:
            raise SafetensorsError(f"{path}: tensor '{name}': unsupported dtype {dtype}")
        storage, size = _STORAGE[dtype]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(v) for v in info["data_offsets"])
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * size or end > len(blob):
            raise SafetensorsError(
                f"{path}: tensor '{name}': data_offsets [{begin}, {end}] do not hold "
                f"{count} x {size} bytes inside a {len(blob)}-byte data section")
        arr = np.frombuffer(blob, dtype=storage, count=count, offset=begin).reshape(shape)
        if dtype == "BF16":
            arr = bf16_bits_to_f32(arr)
        elif as_float32 and dtype in ("F16", "F64"):
            arr = arr.astype(np.float32)
        tensors[name] = np.array(arr)  # own, writable copy
        dtypes[name] = dtype
    return tensors, dtypes, metadata


def save(path, tensors: Mapping[str, np.ndarray], dtypes: Optional[Mapping[str, str]] = None,
         default_dtype: str = "F32", metadata: Optional[Mapping[str, str]] = None) -> None:
    """Writes tensors (name -> numpy array) in sorted name order.

    `dtypes` picks the stored type per tensor (F32/F16/BF16 for floating arrays; U8/BOOL/I64/I32
    keep integer arrays as they are); tensors not listed use `default_dtype` when floating, and
    their own type otherwise. Output is byte-for-byte deterministic.
    """
    dtypes = dict(dtypes or {})
    header: dict = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        arr = np.asarray(tensors[name])
        if name in dtypes:
            dtype = dtypes[name]
        elif arr.dtype.kind == "f":
            dtype = default_dtype
        elif arr.dtype == np.bool_:
            dtype = "BOOL"
        elif arr.dtype == np.uint8:
            dtype = "U8"
        elif arr.dtype == np.int32:
            dtype = "I32"
        else:
            dtype = "I64"
        if dtype == "BF16":
            data = f32_to_bf16_bits(arr.astype(np.float32)).astype("<u2").tobytes()
        else:
            storage, _ = _STORAGE[dtype]
            data = np.ascontiguousarray(arr.astype(storage)).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * ((8 - len(raw) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for c in chunks:
            f.write(c)
