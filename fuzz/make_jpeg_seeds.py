"""Write the JPEG fuzz seeds into fuzz/regressions/jpeg/ (run from the repository root).

Small deterministic images (gradients) encoded by Pillow: baseline and progressive, grey,
RGB and CMYK, 4:4:4, 4:2:2 and 4:2:0 chroma subsampling, restart markers, odd sizes down
to 1x1 and extreme aspect ratios; then a few broken files (cut inside the scan, headers
without a scan, a PNG). The bytes are committed; rerun only to change the set (a new Pillow may encode differently).
"""

import io
from pathlib import Path

from PIL import Image

OUT = Path("fuzz/regressions/jpeg")


def pattern(mode, w, h):
    """A gradient with some texture, so the scans carry AC coefficients."""
    img = Image.new(mode, (w, h))
    bands = len(mode)
    img.putdata([
        tuple((x * 37 + y * 11 + c * 80 + (x * y) % 23) % 256 for c in range(bands))
        if bands > 1 else (x * 37 + y * 11 + (x * y) % 23) % 256
        for y in range(h) for x in range(w)
    ])
    return img


def jpeg(mode, w, h, **opts):
    buf = io.BytesIO()
    pattern(mode, w, h).save(buf, "JPEG", quality=opts.pop("quality", 75), **opts)
    return buf.getvalue()


def flat(mode, w, h):
    """A one-colour image: the smallest file for its size."""
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128).save(buf, "JPEG", quality=10, optimize=True)
    return buf.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = {
        "seed-rgb-1x1.jpg": jpeg("RGB", 1, 1),
        "seed-grey-1x1.jpg": jpeg("L", 1, 1),
        "seed-grey-7x5.jpg": jpeg("L", 7, 5),
        "seed-rgb-7x5-420.jpg": jpeg("RGB", 7, 5, subsampling=2),
        "seed-rgb-33x17-420.jpg": jpeg("RGB", 33, 17, subsampling=2),
        "seed-rgb-33x17-444.jpg": jpeg("RGB", 33, 17, subsampling=0),
        "seed-rgb-17x33-422-optimized.jpg": jpeg("RGB", 17, 33, subsampling=1, optimize=True),
        "seed-rgb-33x17-progressive-420.jpg": jpeg("RGB", 33, 17, subsampling=2, progressive=True),
        "seed-rgb-7x5-progressive-444.jpg": jpeg("RGB", 7, 5, subsampling=0, progressive=True),
        "seed-grey-33x17-progressive.jpg": jpeg("L", 33, 17, progressive=True),
        "seed-rgb-40x9-restart.jpg": jpeg("RGB", 40, 9, restart_marker_blocks=2),
        "seed-cmyk-9x7.jpg": jpeg("CMYK", 9, 7),
        "seed-rgb-64x3-q95.jpg": jpeg("RGB", 64, 3, quality=95),
        # Extreme aspect ratios: the evaluation resize makes the long side huge.
        "seed-grey-1x2000.jpg": jpeg("L", 1, 2000, quality=10, optimize=True),
        "seed-rgb-1500x2.jpg": jpeg("RGB", 1500, 2, quality=10, optimize=True),
        # 1x32768 in 1.2 KB: its evaluation resize is 256 x 8388608 pixels, whose resampling
        # weights (all rows, ~240 MB) were computed before only the center crop's were.
        "seed-grey-1x32768-flat.jpg": flat("L", 1, 32768),
    }
    whole = seeds["seed-rgb-33x17-420.jpg"]
    sos = whole.index(b"\xff\xda")
    sos_len = int.from_bytes(whole[sos + 2:sos + 4], "big")
    seeds["seed-broken-truncated.jpg"] = whole[: (sos + len(whole)) // 2]
    seeds["seed-broken-header-only.jpg"] = whole[: sos + 2 + sos_len]
    seeds["seed-broken-header-eoi.jpg"] = whole[:sos] + b"\xff\xd9"
    seeds["seed-broken-soi-eoi.jpg"] = b"\xff\xd8\xff\xd9"
    png = io.BytesIO()
    pattern("RGB", 3, 2).save(png, "PNG")
    seeds["seed-broken-png.JPEG"] = png.getvalue()
    for name, data in seeds.items():
        (OUT / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes")


if __name__ == "__main__":
    main()
