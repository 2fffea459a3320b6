"""Expected suggestions of fastai's own rules for the range-test curves in tests/golden/lr_find/.

Each curve is an lrlab `lr_find.csv` (step,lr,loss,smoothed_loss). fastai's `Learner.lr_find`
hands its suggestion functions the recorder's smoothed losses from `num_it//10` to the
fifth-last, cut at the first NaN; those few lines are restated below, and the rules themselves
(`valley`, `minimum`, `steep`) are fastai's, imported. Writes tests/golden/lr_find/fastai.json.

Needs fastai and its imports (numpy, pandas, matplotlib, ...) next to torch on PYTHONPATH, e.g.
    pip install --target T --no-deps fastai fastcore fasttransform plum-dispatch numpy ...
    PYTHONPATH=T:$HOME/.cache/lrlab/torch-2.13.0 python3 scripts/golden_lr_find.py
"""
import csv
import json
import pathlib

import torch
from fastai.callback.schedule import minimum, steep, valley
import fastai

DIR = pathlib.Path(__file__).resolve().parent.parent / "tests" / "golden" / "lr_find"

# The number of steps each curve's test asked for (fastai's num_it); a test that stopped
# early has fewer rows.
NUM_IT = {"demo_seed0": 100, "demo_seed1": 100, "demo_seed2": 100, "nan_cut": 100,
          "rising": 30}


def main():
    out = {"fastai_version": fastai.__version__, "curves": {}}
    for path in sorted(DIR.glob("*.csv")):
        name = path.stem
        rows = list(csv.DictReader(path.open()))
        lrs = [float(r["lr"]) for r in rows]
        smoothed = [float(r["smoothed_loss"]) for r in rows]
        num_it = NUM_IT[name]
        # Learner.lr_find: trim, then cut at the first NaN.
        lrs_t = torch.tensor(lrs[num_it // 10:-5], dtype=torch.float64)
        losses_t = torch.tensor(smoothed[num_it // 10:-5], dtype=torch.float64)
        nan_idxs = torch.nonzero(torch.isnan(losses_t.view(-1)))
        if len(nan_idxs) > 0:
            drop_idx = min(nan_idxs)
            lrs_t, losses_t = lrs_t[:drop_idx], losses_t[:drop_idx]
        out["curves"][name] = {
            "num_it": num_it,
            "valley": valley(lrs_t, losses_t, num_it)[0],
            "minimum": minimum(lrs_t, losses_t, num_it)[0],
            "steep": steep(lrs_t, losses_t, num_it)[0],
        }
    (DIR / "fastai.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
