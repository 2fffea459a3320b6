"""PyTorch counterpart of `lrlab bench schedule`: what a training loop pays per step for its
schedule with torch.optim.lr_scheduler: scheduler.step() plus reading the learning rate and
momentum back from the optimizer's param group (as a loop that logs them does), on SGD with
one tiny parameter. The families and their run length (200 epochs x 391 steps) match
src/schedule/bench.rs; schedulers step once per iteration. Prints one JSON object with
ns_per_step per family (best of three passes).

Usage: python3 bench/schedule_pytorch.py [--steps 20000] [--family cosine ...]
"""
import argparse
import json
import math
import time
import warnings

import torch
from torch.optim import lr_scheduler as S

SPE, EPOCHS = 391, 200
TOTAL = SPE * EPOCHS


def make(name, opt):
    """The scheduler of one family, on `opt` (whose lr is set to the family's peak first)."""
    g = opt.param_groups[0]
    if name == "constant":
        g["lr"] = g["initial_lr"] = 0.1
        return S.ConstantLR(opt, factor=1.0, total_iters=0)
    if name == "step":
        g["lr"] = g["initial_lr"] = 0.1
        return S.MultiStepLR(opt, milestones=[60 * SPE, 120 * SPE, 160 * SPE], gamma=0.2)
    if name == "exponential":
        g["lr"] = g["initial_lr"] = 0.1
        return S.ExponentialLR(opt, gamma=0.97 ** (1 / SPE))
    if name == "linear":
        g["lr"] = g["initial_lr"] = 0.1
        return S.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=TOTAL)
    if name == "cosine":
        g["lr"] = g["initial_lr"] = 0.1
        return S.CosineAnnealingLR(opt, T_max=TOTAL, eta_min=0.0)
    if name == "sgdr":
        g["lr"] = g["initial_lr"] = 0.05
        return S.CosineAnnealingWarmRestarts(opt, T_0=10 * SPE, T_mult=2, eta_min=0.0)
    if name == "clr":
        return S.CyclicLR(opt, base_lr=0.001, max_lr=0.006, step_size_up=2000,
                          mode="triangular", cycle_momentum=True)
    if name == "one_cycle":
        return S.OneCycleLR(opt, max_lr=0.4, total_steps=TOTAL, cycle_momentum=True)
    if name == "polynomial":
        g["lr"] = g["initial_lr"] = 0.1
        return S.PolynomialLR(opt, total_iters=TOTAL, power=2.0)
    if name == "warmup_cosine":
        g["lr"] = g["initial_lr"] = 0.1
        warm = S.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5 * SPE)
        cos = S.CosineAnnealingLR(opt, T_max=TOTAL - 5 * SPE, eta_min=0.0)
        return S.SequentialLR(opt, [warm, cos], milestones=[5 * SPE])
    raise SystemExit(f"unknown family {name}")


FAMILIES = ["constant", "step", "exponential", "linear", "cosine", "sgdr", "clr",
            "one_cycle", "polynomial", "warmup_cosine"]


def time_family(name, steps):
    best = math.inf
    for _ in range(3):
        p = torch.nn.Parameter(torch.zeros(1))
        opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
        sched = make(name, opt)
        group = opt.param_groups[0]
        acc, k = 0.0, 0
        t0 = time.perf_counter_ns()
        for _ in range(steps):
            sched.step()
            acc += group["lr"] + group["momentum"]
            k += 1
            if k == TOTAL - 1:  # OneCycleLR refuses to step past its total; start over
                sched = make(name, opt)
                k = 0
        best = min(best, (time.perf_counter_ns() - t0) / steps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--family", action="append", default=[])
    args = ap.parse_args()
    torch.set_num_threads(1)
    # The loop has no optimizer.step(); the order warning is about training, not timing.
    warnings.filterwarnings("ignore", message="Detected call of")
    names = args.family or FAMILIES
    out = [{"family": n, "ns_per_step": time_family(n, args.steps)} for n in names]
    print(json.dumps({"impl": "pytorch", "steps": args.steps, "families": out}))


if __name__ == "__main__":
    main()
