#!/usr/bin/env python3
"""Seed the fuzz corpora from the shared fixtures (run from fuzz/, once, before the first run).

Whole files seed the targets that take files; the raw EXIF (TIFF) blocks, XMP packets and PNG
text chunks cut out of those files seed `exif_xmp_text` and `generators`, which take payloads.
A stealth-pnginfo alpha payload is built for `generators`, and tiny PNGs of every colour type
for `decode_small`. Corpora are then minimised with `cargo fuzz cmin` and committed.
"""
import glob
import hashlib
import os
import struct
import zlib

SHARED = os.path.join("..", "..", "shared")
FILES = sorted(
    p
    for pattern in (
        "fixtures/c2pa/*.*",
        "fixtures/heic/*",
        "fixtures/metadata/**/*.png",
        "fixtures/metadata/**/*.jpg",
        "fixtures/metadata/**/*.webp",
        "corpus/real/metadata-extractor/*/*",
    )
    for p in glob.glob(os.path.join(SHARED, pattern), recursive=True)
    if not p.endswith((".csv", ".txt", ".md", "LICENSE", "-MIT", "-APACHE", ".svg", ".tiff"))
) + sorted(glob.glob(os.path.join("..", "tests", "fixtures", "*.avif")))


def put(target, data):
    folder = os.path.join("corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def jpeg_segments(data):
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker in (0xD9, 0xDA):
            return
        size = struct.unpack(">H", data[i + 2 : i + 4])[0]
        yield marker, data[i + 4 : i + 2 + size]
        i += 2 + size


def png_chunks(data):
    i = 8
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i : i + 8])
        yield kind, data[i + 8 : i + 8 + size]
        i += 12 + size


def riff_chunks(data):
    i = 12
    while i + 8 <= len(data):
        kind, size = struct.unpack("<4sI", data[i : i + 8])
        yield kind, data[i + 8 : i + 8 + size]
        i += 8 + size + (size & 1)


def payloads(data):
    """(kind, bytes) of every EXIF, XMP and PNG text block of a file."""
    if data[:2] == b"\xff\xd8":
        for marker, body in jpeg_segments(data):
            if marker == 0xE1 and body.startswith(b"Exif\0\0"):
                yield "exif", body[6:]
            elif marker == 0xE1 and body.startswith(b"http://ns.adobe.com/xap/1.0/\0"):
                yield "xmp", body[29:]
            elif marker == 0xFE:
                yield "text", b"comment\0" + body
    elif data[:8] == b"\x89PNG\r\n\x1a\n":
        for kind, body in png_chunks(data):
            if kind == b"eXIf":
                yield "exif", body
            elif kind in (b"tEXt", b"zTXt", b"iTXt"):
                yield "chunk", body
                keyword, _, rest = body.partition(b"\0")
                if kind == b"zTXt":
                    try:
                        rest = zlib.decompress(rest[1:])
                    except zlib.error:
                        continue
                elif kind == b"iTXt":
                    flag, rest = rest[0:1], rest[2:]
                    rest = rest.split(b"\0", 2)[-1]
                    if flag == b"\1":
                        try:
                            rest = zlib.decompress(rest)
                        except zlib.error:
                            continue
                yield "text", keyword + b"\0" + rest
    elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        for kind, body in riff_chunks(data):
            if kind == b"EXIF":
                yield "exif", body[6:] if body.startswith(b"Exif\0\0") else body
            elif kind == b"XMP ":
                yield "xmp", body


def png(width, height, color_type, bit_depth, rows, palette=None):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\0" + row for row in rows)
    extra = chunk(b"PLTE", palette) if palette else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def stealth(text):
    """A one-pixel-wide alpha channel carrying `stealth_pnginfo` in its low bits."""
    payload = b"stealth_pnginfo" + struct.pack(">I", len(text) * 8) + text
    bits = [(byte >> (7 - k)) & 1 for byte in payload for k in range(8)]
    return b"alpha\0" + bytes(0xFE | b for b in bits)


for path in FILES:
    with open(path, "rb") as f:
        data = f.read()
    put("sniff_blocks", data)
    put("decode_metadata_provenance", data)
    if len(data) < 64 * 1024:
        put("decode_small", data)
    for kind, body in payloads(data):
        if kind in ("exif", "xmp", "chunk"):
            put("exif_xmp_text", body)
        if kind == "text":
            put("generators", body)
        elif kind == "exif":
            put("generators", b"exif\0" + body)
        elif kind == "xmp":
            put("generators", b"XML:com.adobe.xmp\0" + body)

put("generators", stealth(b"a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Model: sd_xl_base_1.0"))
for color_type, channels in ((0, 1), (2, 3), (4, 2), (6, 4)):
    for depth in (8, 16):
        row = bytes(range(channels * depth // 8 * 4))
        put("decode_small", png(4, 3, color_type, depth, [row] * 3))
put("decode_small", png(4, 3, 3, 8, [bytes([0, 1, 2, 1])] * 3, palette=bytes(range(9))))
print({t: len(os.listdir(os.path.join("corpus", t))) for t in sorted(os.listdir("corpus"))})
