"""The paper's open directions against AN on the half-scale mosaics: `compare_methods.py` with their rows.

    python bench/beyond_paper.py --losses assume_negative,online_negative --out runs/beyond_paper
    python bench/beyond_paper.py --losses online_negative --set online_gamma=2 --out runs/beyond_gamma2

Every option is `bench/compare_methods.py`'s (same benchmarks, seeds, resuming, one
TensorFlow thread per run); this script only adds the rows of the losses built
for the paper's open directions (sec. 5), so that table's rows and run names stay as they were.
Each run's per-epoch diagnostics (pointing, WN AUC, prob. AUC) are in its
`history.json`; `--set` changes every run, so a variant (another `online_gamma`)
goes to its own `--out`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import compare_methods  # noqa: E402

NEW_ROWS = [
    ("ON (online negatives from the model's scores)", "patch", {"loss": "online_negative"}),
]
compare_methods.RUNS = compare_methods.RUNS + NEW_ROWS

if __name__ == "__main__":
    compare_methods.main()
