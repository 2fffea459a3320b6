"""PyTorch eager counterpart of `lrlab bench train`: the same CIFAR ResNet (He et al., option A
shortcuts), synthetic data of the same shape, SGD with momentum 0.9 and weight decay 5e-4 on
conv/linear weights, the learning rate set before every step, and the same number of warm-up
and timed steps. Prints one JSON object with images_per_sec.

Usage: python3 bench/train_pytorch.py --model resnet20 --batch 128 --steps 20 --threads 2
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.stride = stride
        self.extra = cout - cin

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        sc = x
        if self.stride != 1 or self.extra:
            sc = x[:, :, :: self.stride, :: self.stride]
            sc = F.pad(sc, (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
        return F.relu(y + sc)


class ResNetCifar(nn.Module):
    def __init__(self, depth, classes=10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, cin = [], 16
        for i, cout in enumerate([16, 32, 64]):
            for j in range(n):
                layers.append(Block(cin, cout, 2 if (i > 0 and j == 0) else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument(
        "--channels-last",
        action="store_true",
        help="NHWC weights and input on the CPU too (lrlab's layout on every device)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if args.model in ("resnet18", "resnet34", "resnet50"):
        import torchvision  # ImageNet models come from torchvision

        model = getattr(torchvision.models, args.model)(num_classes=10).to(dev)
    else:
        model = ResNetCifar(int(args.model.replace("resnet", ""))).to(dev)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.SGD(
        [{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
        lr=0.1,
        momentum=0.9,
    )
    cuda = dev.type == "cuda"
    # On CUDA as lrlab's loop: channels-last, bf16 autocast, cuDNN benchmark. On the CPU the
    # default is plain PyTorch eager (NCHW); --channels-last gives it lrlab's layout.
    nhwc = cuda or args.channels_last
    if nhwc:
        model = model.to(memory_format=torch.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    if nhwc:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=dev)

    def step(k):
        for g in opt.param_groups:
            g["lr"] = 0.1 * (1 - k / 10000)
            g["momentum"] = 0.9
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        loss.backward()
        opt.step()
        return loss.detach()

    for k in range(args.warmup):
        step(k)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(args.steps):
        loss = step(args.warmup + k)
    loss.item()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch",
        "model": args.model,
        "batch": args.batch,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "device": args.device,
        "images_per_sec": args.batch * args.steps / dt,
    }))


if __name__ == "__main__":
    main()
