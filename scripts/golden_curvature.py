"""Reference values of the curvature along the gradient, gᵀg and gᵀHg (Hg by double backward),
per layer and in total, for tests/hf_lr_golden.rs.

Usage: PYTHONPATH=<torch install> python3 scripts/golden_curvature.py tests/golden
The network, in float64: conv1 (1->2, 3x3, bias) -> bn1 (BatchNorm2d, training mode) -> tanh
-> flatten -> fc (32->3, bias); cross-entropy with label smoothing 0.1 on a fixed batch of four
1x6x6 images. Every parameter and the images are sines of their flat index (the test builds the
same values), so nothing binary is stored.
"""
import json
import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)

# (name, shape, value of flat index k): the test writes the same formulas.
PARAMS = [
    ("conv1.weight", (2, 1, 3, 3), lambda k: 0.5 * math.sin(0.37 * k + 1.0)),
    ("conv1.bias", (2,), lambda k: 0.1 * math.sin(0.37 * k + 2.0)),
    ("bn1.weight", (2,), lambda k: 1.0 + 0.2 * math.sin(0.37 * k + 3.0)),
    ("bn1.bias", (2,), lambda k: 0.1 * math.sin(0.37 * k + 4.0)),
    ("fc.weight", (3, 32), lambda k: 0.3 * math.sin(0.37 * k + 5.0)),
    ("fc.bias", (3,), lambda k: 0.05 * math.sin(0.37 * k + 6.0)),
]
LABELS = [0, 2, 1, 2]


def filled(shape, f):
    n = math.prod(shape)
    return torch.tensor([f(k) for k in range(n)]).reshape(shape)


def images():
    return filled((4, 1, 6, 6), lambda k: math.sin(0.23 * k + 0.5) + 0.3 * math.cos(1.7 * k))


def main():
    out = sys.argv[1]
    conv = nn.Conv2d(1, 2, 3)
    bn = nn.BatchNorm2d(2)
    fc = nn.Linear(32, 3)
    mods = {"conv1": conv, "bn1": bn, "fc": fc}
    params = []
    with torch.no_grad():
        for name, shape, f in PARAMS:
            layer, kind = name.split(".")
            p = getattr(mods[layer], kind)
            p.copy_(filled(shape, f))
            params.append((name, p))
    bn.train()
    x = images()
    y = torch.tensor(LABELS)
    logits = fc(torch.tanh(bn(conv(x))).flatten(1))
    loss = F.cross_entropy(logits, y, label_smoothing=0.1)
    ps = [p for _, p in params]
    g = torch.autograd.grad(loss, ps, create_graph=True)
    v = [t.detach() for t in g]
    hv = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), ps)
    layers = {}
    for (name, _), vi, hvi in zip(params, v, hv):
        layer = name.rsplit(".", 1)[0]
        d = layers.setdefault(layer, {"gg": 0.0, "ghg": 0.0})
        d["gg"] += float((vi * vi).sum())
        d["ghg"] += float((vi * hvi).sum())
    gg = sum(d["gg"] for d in layers.values())
    ghg = sum(d["ghg"] for d in layers.values())
    ref = {
        "torch": torch.__version__,
        "loss": float(loss.detach()),
        "gg": gg,
        "ghg": ghg,
        "curvature_lr": gg / ghg,
        "layers": layers,
    }
    with open(os.path.join(out, "curvature.json"), "w") as f:
        json.dump(ref, f, indent=1, sort_keys=True)
        f.write("\n")
    print(json.dumps(ref, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
