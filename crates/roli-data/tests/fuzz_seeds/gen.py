"""Writes the committed seed files of the roli-data fuzz tests (tests/fuzz.rs): tiny CIFAR
"python version" batches as Python 3 pickles them. Run once from the repository root with the
project venv: .venv/bin/python crates/roli-data/tests/fuzz_seeds/gen.py
(IDX and CIFAR binary seeds are built in the test itself; the Python-2 style pickle is
hand-assembled there too, since Python 3 cannot write it.)"""
import pickle
from pathlib import Path

import numpy as np

out = Path(__file__).parent
rng = np.random.default_rng(0)
data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
c10 = {b"batch_label": b"testing batch 1 of 1", b"labels": [3, 9], b"data": data, b"filenames": [b"a.png", b"b.png"]}
c100 = {"filenames": ["a.png"], "fine_labels": [77], "coarse_labels": [3], "data": data[:1]}
for proto in (2, 4):
    (out / f"cifar10_p{proto}.pkl").write_bytes(pickle.dumps(c10, protocol=proto))
(out / "cifar100_p2.pkl").write_bytes(pickle.dumps(c100, protocol=2))
