#!/usr/bin/env python3
"""Write synthetic ImageNet-like JPEGs in the ILSVRC folder layout, for benchmarks.

Usage: make_jpegs.py OUTDIR N [--classes K] [--val M] [--seed S]

OUTDIR/train/<wnid>/*.JPEG gets N images spread over K classes (default 10), OUTDIR/val/<wnid>/
M images (default N/10, at least one per class). Half the images are 500x375 (the most common
ILSVRC size), the others have random sides of 333-500 px in either orientation. Content is
"natural-ish": smooth gradients, blurred shapes and Gaussian noise, saved at quality 90, so
files weigh about what ILSVRC photos of the same size weigh (~100 KB at 500x375) and the
entropy decoder does a realistic amount of work. Needs Pillow.
"""
import argparse
import os
import random

from PIL import Image, ImageChops, ImageDraw, ImageFilter


def make_image(rng: random.Random, w: int, h: int) -> Image.Image:
    bands = []
    for _ in range(3):
        g = Image.linear_gradient("L") if rng.random() < 0.7 else Image.radial_gradient("L")
        g = g.rotate(rng.uniform(0, 360), resample=Image.BILINEAR, expand=True)
        bands.append(g.resize((w, h), Image.BILINEAR))
    img = Image.merge("RGB", bands)
    shapes = Image.new("RGB", (w, h))
    draw = ImageDraw.Draw(shapes)
    for _ in range(rng.randint(8, 20)):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = x0 + rng.randint(10, w // 2), y0 + rng.randint(10, h // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    shapes = shapes.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 4.0)))
    img = Image.blend(img, shapes, 0.6)
    noise = Image.effect_noise((w, h), rng.uniform(14.0, 20.0))
    noise = Image.merge("RGB", (noise, noise.rotate(180), noise.transpose(Image.FLIP_LEFT_RIGHT)))
    return ImageChops.add(img, noise, scale=1.0, offset=-128)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("n", type=int, help="number of training images")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--val", type=int, default=None, help="number of validation images")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.n < 1 or args.classes < 1:
        ap.error("n and --classes must be >= 1")
    n_val = args.val if args.val is not None else max(args.n // 10, args.classes)
    rng = random.Random(args.seed)
    wnids = [f"n{10000000 + 1111 * c:08d}" for c in range(args.classes)]
    for split, count in (("train", args.n), ("val", n_val)):
        for c, wnid in enumerate(wnids):
            os.makedirs(os.path.join(args.outdir, split, wnid), exist_ok=True)
        for i in range(count):
            wnid = wnids[i % args.classes]
            if rng.random() < 0.5:
                w, h = 500, 375
            else:
                w, h = rng.randint(400, 500), rng.randint(333, 500)
                if rng.random() < 0.3:
                    w, h = h, w
            path = os.path.join(args.outdir, split, wnid, f"{wnid}_{i}.JPEG")
            make_image(rng, w, h).save(path, quality=90)
    print(f"wrote {args.n} train and {n_val} val images to {args.outdir}")


if __name__ == "__main__":
    main()
