#!/usr/bin/env python3
"""Write synthetic CIFAR-10 binary files, of the true size, in the official format, for the
loader benchmark (there is no need for the real images to time the loader).

Usage: make_cifar10.py OUTDIR [--seed S]

OUTDIR/cifar-10-batches-bin/ gets data_batch_1.bin .. data_batch_5.bin and test_batch.bin,
10 000 records each of <label byte 0-9><3072 pixel bytes> (32x32, CHW), 30 730 000 bytes per
file as in the archive from https://www.cs.toronto.edu/~kriz/cifar.html. Pixels are seeded
random bytes; labels cycle 0..9. Standard library only.
"""
import argparse
import os
import random

RECORDS, PIXELS = 10000, 3072


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = os.path.join(args.outdir, "cifar-10-batches-bin")
    os.makedirs(out, exist_ok=True)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]
    for name in names:
        pixels = rng.randbytes(RECORDS * PIXELS)
        buf = bytearray(RECORDS * (1 + PIXELS))
        for r in range(RECORDS):
            at = r * (1 + PIXELS)
            buf[at] = r % 10
            buf[at + 1 : at + 1 + PIXELS] = pixels[r * PIXELS : (r + 1) * PIXELS]
        tmp = os.path.join(out, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(buf)
        os.replace(tmp, os.path.join(out, name))
    print(f"wrote {len(names)} files of {RECORDS * (1 + PIXELS)} bytes to {out}")


if __name__ == "__main__":
    main()
