#!/usr/bin/env python3
"""Throughput of torchvision's PIL training pipeline, in images/s.

Usage: imagenet_torchvision.py DIR [--n N] [--size S] [--repeat R] [--workers W]

Times what a torchvision ImageNet training loader does per image on a worker: open and
decode the file with PIL (`datasets.folder.pil_loader`, i.e. `Image.open(f).convert("RGB")`),
then RandomResizedCrop(S) + RandomHorizontalFlip() + ToTensor(), over N images of DIR/train
spread evenly over the classes (the same selection as lrlab's `imagenet::bench_decode`). The
files are read once before timing so both sides read from the page cache. torch is limited to
one thread. Prints the best of R timed passes.

With --workers W > 0 the images go through a torch DataLoader with W worker processes and
batches of --batch images, as a torchvision training script spreads loading over cores; the
workers persist across passes and one untimed pass starts them first.

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
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64)
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
    if args.workers > 0:
        loader = torch.utils.data.DataLoader(
            Images(paths, tf), batch_size=args.batch, num_workers=args.workers, persistent_workers=True
        )
        for x in loader:  # start the workers
            pass

        def one_pass():
            for x in loader:
                pass
            return x[0]

    else:

        def one_pass():
            for p in paths:
                x = tf(datasets.folder.pil_loader(p))
            return x

    best = 0.0
    for _ in range(args.repeat):
        start = time.perf_counter()
        x = one_pass()
        rate = len(paths) / (time.perf_counter() - start)
        best = max(best, rate)
        assert x.shape == (3, args.size, args.size)
    how = f"{args.workers} worker processes" if args.workers else "1 core"
    print(f"torchvision {torchvision.__version__.split('+')[0]} PIL pipeline: {best:.1f} images/s ({how})")


class Images(torch.utils.data.Dataset):
    """The timed files as a map-style dataset: path -> transformed tensor."""

    def __init__(self, paths, tf):
        self.paths, self.tf = paths, tf

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return self.tf(datasets.folder.pil_loader(self.paths[i]))


if __name__ == "__main__":
    main()
