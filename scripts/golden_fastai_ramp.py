"""fastai's own LR finder ramp, for tests/lr_find.rs (`lr_find.convention = "fastai"`).

Runs fastai's `Learner.lr_find` (its `LRFinder` callback, `Recorder` and `AvgSmoothLoss`) on a
tiny regression and records what its recorder holds: the learning rate and the smoothed loss
of every iteration. Two runs: an ordinary one (start 1e-7, end 10, num_it 100), and one whose
loss turns NaN part-way (the targets hold a NaN from some batch on: fastai's comparisons with
NaN are false, so it does not stop and records every iteration up to num_it). Writes
tests/golden/lr_find/fastai_ramp.json.

Needs fastai and its imports next to torch on PYTHONPATH, e.g.
    pip install --target T --no-deps fastai==2.8.12 fastcore fasttransform plum-dispatch numpy ...
    PYTHONPATH=T:$HOME/.cache/lrlab/torch-2.13.0 python3 scripts/golden_fastai_ramp.py
"""
import json
import math
import pathlib

import fastai
import torch
from fastai.data.core import DataLoaders
import fastai.callback.schedule  # noqa: F401 (patches Learner.lr_find)
from fastai.learner import Learner
from torch.utils.data import DataLoader, TensorDataset

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "lr_find" / "fastai_ramp.json"


def run(start_lr, end_lr, num_it, nan_from=None):
    torch.manual_seed(0)
    n = 64 * 8
    x = torch.randn(n, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    if nan_from is not None:
        # Batches are drawn in order (no shuffle): from batch nan_from on, a NaN target.
        y[nan_from * 16:, 0] = float("nan")
    ds = TensorDataset(x, y)
    dls = DataLoaders(DataLoader(ds, batch_size=16, shuffle=False), DataLoader(ds, batch_size=16))
    learn = Learner(dls, torch.nn.Linear(4, 1), loss_func=torch.nn.MSELoss())
    learn.lr_find(start_lr=start_lr, end_lr=end_lr, num_it=num_it, show_plot=False,
                  suggest_funcs=())
    lrs = [float(v) for v in learn.recorder.lrs]
    losses = [float(v) for v in learn.recorder.losses]
    return {
        "start_lr": start_lr,
        "end_lr": end_lr,
        "num_it": num_it,
        "lrs": lrs,
        "smoothed_loss": [None if math.isnan(v) else v for v in losses],
    }


def main():
    out = {
        "fastai_version": fastai.__version__,
        "runs": {
            "default": run(1e-7, 10.0, 100),
            "short": run(1e-4, 1.0, 25),
            "nan": run(1e-5, 1.0, 30, nan_from=12),
        },
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
