#!/usr/bin/env python3
"""Throughput of torchvision's PIL training pipeline on one core, in images/s.

Usage: imagenet_torchvision.py DIR [--n N] [--size S] [--repeat R]

Times what a torchvision ImageNet training loader does per image on a worker: open and
decode the file with PIL (`datasets.folder.pil_loader`, i.e. `Image.open(f).convert("RGB")`),
then RandomResizedCrop(S) + RandomHorizontalFlip() + ToTensor(), over N images of DIR/train
spread evenly over the classes (the same selection as lrlab's `imagenet::bench_decode`). The
files are read once before timing so both sides read from the page cache. torch is limited to
one thread. Prints the best of R timed passes.

Needs torch, torchvision, Pillow and numpy, e.g.
  pip install --target T --no-deps torchvision==0.28.0 pillow numpy
  PYTHONPATH=T:<torch install> python3 bench/imagenet_torchvision.py DIR
"""
import argparse
import os
import time

import torch
import torchvision
from torchvision import datasets, transforms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = datasets.ImageFolder(os.path.join(args.dir, "train"))
    paths = [train.samples[i * len(train) // args.n][0] for i in range(args.n)]
    for p in paths:  # warm the page cache
        with open(p, "rb") as f:
            f.read()
    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(args.size),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
        ]
    )
    best = 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        for p in paths:
            x = tf(datasets.folder.pil_loader(p))
        rate = len(paths) / (time.perf_counter() - start)
        best = max(best, rate)
        assert x.shape == (3, args.size, args.size)
    print(f"torchvision {torchvision.__version__.split('+')[0]} PIL pipeline: {best:.1f} images/s (1 core)")


if __name__ == "__main__":
    main()
