"""Writes tests/golden/decisions.npz: planner decisions on the shipped weights at fixed seeds.

Run once on a known-good revision (``python tests/golden/make_golden.py``); ``test_golden.py``
then checks that refactors leave every decision unchanged.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.test_golden import DECISIONS, compute  # noqa: E402

if __name__ == "__main__":
    out = Path(__file__).resolve().parent / "decisions.npz"
    np.savez(out, **{name: compute(name) for name in DECISIONS})
    print(f"wrote {out}")
