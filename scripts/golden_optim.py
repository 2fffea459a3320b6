"""Reference trajectories of torch.optim.SGD / AdamW (and the Caffe momentum formula written
out by hand) on a tiny float64 model, for tests/optim_golden.rs.

Usage: PYTHONPATH=<torch install> python3 scripts/golden_optim.py tests/golden
The model: y = x @ w.T + b with w (3x4, decayed: rank 2) and b (3, not decayed under the
`weights` scope); loss = mean((y - t)^2). Learning rate and momentum change every step, as a
schedule would set them.
"""
import json
import math
import os
import sys

import torch

torch.set_default_dtype(torch.float64)
STEPS = 12


def init():
    w = torch.tensor([[math.sin(1.0 + i * 4 + j) * 0.5 for j in range(4)] for i in range(3)])
    b = torch.tensor([math.cos(2.0 + i) * 0.1 for i in range(3)])
    return w, b


def batch(k):
    x = torch.tensor([[math.sin(0.3 * (k + 1) * (r + 1) + c) for c in range(4)] for r in range(5)])
    t = torch.tensor([[math.cos(0.7 * (k + 2) + r - c) for c in range(3)] for r in range(5)])
    return x, t


def lr_at(k):
    return 0.05 + 0.04 * math.sin(0.9 * k)


def mom_at(k):
    return 0.85 + 0.1 * math.cos(0.6 * k)


def loss_of(w, b, k):
    x, t = batch(k)
    return ((x @ w.T + b - t) ** 2).mean()


def run_torch(kind, wd, bias=(1.0, 0.0), weight=(1.0, 1.0), **kw):
    """`bias` = (lr multiplier, weight decay) of b's param group, `weight` = (lr multiplier,
    decay multiplier) of w's (Caffe's per-blob lr_mult and decay_mult, as a PyTorch user writes
    them: one param group each)."""
    w, b = init()
    w.requires_grad_(True)
    b.requires_grad_(True)
    groups = [{"params": [w], "weight_decay": wd * weight[1], "lr_mult": weight[0]},
              {"params": [b], "weight_decay": bias[1], "lr_mult": bias[0]}]
    if kind == "sgd":
        opt = torch.optim.SGD(groups, lr=0.1, momentum=0.9, **kw)
    else:
        opt = torch.optim.AdamW(groups, lr=0.1, betas=(0.9, kw.get("beta2", 0.999)), eps=1e-8)
    losses = []
    for k in range(STEPS):
        for g in opt.param_groups:
            g["lr"] = lr_at(k) * g["lr_mult"]
            if kind == "sgd":
                g["momentum"] = mom_at(k)
            else:
                g["betas"] = (mom_at(k), g["betas"][1])
        opt.zero_grad()
        loss = loss_of(w, b, k)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return w.detach(), b.detach(), losses


def run_caffe(wd, nesterov, bias=(1.0, 0.0), weight=(1.0, 1.0)):
    """Caffe SGD: v = mu*v + lr*(g + wd*p); p -= v. Nesterov: p -= (1+mu)*v_new - mu*v_old.
    `bias` = (lr_mult, local decay) of b, `weight` = (lr_mult, decay_mult) of w: Caffe's local
    rate lr * lr_mult and local decay wd * decay_mult."""
    w, b = init()
    params = [w, b]
    decays = [wd * weight[1], bias[1]]
    mults = [weight[0], bias[0]]
    vel = [torch.zeros_like(p) for p in params]
    losses = []
    for k in range(STEPS):
        for p in params:
            p.requires_grad_(True)
        loss = loss_of(params[0], params[1], k)
        grads = torch.autograd.grad(loss, params)
        losses.append(loss.item())
        with torch.no_grad():
            new = []
            for p, g, v, d, m in zip(params, grads, vel, decays, mults):
                dv = g + d * p
                v_new = mom_at(k) * v + lr_at(k) * m * dv
                if nesterov:
                    p = p - ((1 + mom_at(k)) * v_new - mom_at(k) * v)
                else:
                    p = p - v_new
                new.append((p.detach(), v_new))
            params = [n[0] for n in new]
            vel = [n[1] for n in new]
    return params[0], params[1], losses


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    cases = {}
    w0, b0 = init()
    for name, fn in [
        ("sgd_pytorch", lambda: run_torch("sgd", 1e-2)),
        ("sgd_pytorch_nesterov", lambda: run_torch("sgd", 1e-2, nesterov=True)),
        ("sgd_pytorch_dampening", lambda: run_torch("sgd", 1e-2, dampening=0.3)),
        ("adamw", lambda: run_torch("adamw", 1e-2)),
        ("sgd_caffe", lambda: run_caffe(1e-2, False)),
        ("sgd_caffe_nesterov", lambda: run_caffe(1e-2, True)),
        # Biases at twice the LR and half the decay (param groups), and Caffe's prototxt
        # setting lr_mult 2, decay_mult 0 with every parameter decayed.
        ("sgd_pytorch_bias_mult", lambda: run_torch("sgd", 1e-2, bias=(2.0, 0.5e-2))),
        ("sgd_caffe_bias_mult", lambda: run_caffe(1e-2, False, bias=(2.0, 0.0))),
        # [[optim.group]]: the weight at half the LR and 3x the decay, the bias at 1.5x the
        # LR and 0.2x the decay; and CLR's ip1 (decay_mult 250) under Caffe, its bias lr_mult 2
        # decay_mult 0.
        ("sgd_pytorch_groups",
         lambda: run_torch("sgd", 1e-2, bias=(1.5, 0.2e-2), weight=(0.5, 3.0))),
        ("adamw_groups",
         lambda: run_torch("adamw", 1e-2, bias=(1.5, 0.2e-2), weight=(0.5, 3.0))),
        ("sgd_caffe_groups",
         lambda: run_caffe(1e-3, False, bias=(2.0, 0.0), weight=(1.0, 250.0))),
    ]:
        w, b, losses = fn()
        cases[name] = {"w": w.flatten().tolist(), "b": b.tolist(), "losses": losses}
    doc = {
        "torch_version": torch.__version__,
        "steps": STEPS,
        "w0": w0.flatten().tolist(),
        "b0": b0.tolist(),
        "batches": [[batch(k)[0].flatten().tolist(), batch(k)[1].flatten().tolist()] for k in range(STEPS)],
        "lr": [lr_at(k) for k in range(STEPS)],
        "momentum": [mom_at(k) for k in range(STEPS)],
        "cases": cases,
    }
    with open(os.path.join(out, "optim.json"), "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
