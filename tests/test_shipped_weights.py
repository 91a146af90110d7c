"""The shipped weights' behaviour, pinned without ``../shared`` (runs in every CI).

* Golden scores: the bundled ``kcross.safetensors`` on fixed phantom pairs gives the pinned values
  (absolute tolerance 2e-4: float32 on different CPUs and thread counts). A new weight file must
  update them, in the same commit, with its SHA-256.
* Monotone ladders (issue 16): on phantom slices, for every ladder family of
  ``kcross_metric.train.ratedsets.ladders.LADDERS`` (the artefact families of ``distortions.py``
  and the lesion edits), five increasing severities score strictly decreasing.
"""

from __future__ import annotations

import pytest
import torch

from kcross_metric import KCross
from kcross_metric.data.phantom import make_pair, make_phantom
from kcross_metric.train.ratedsets.ladders import LADDERS
from kcross_metric.weights import bundled_dir, sha256_file

#: SHA-256 of the weight file the values below were computed with
PINNED_SHA256 = "ba4505bd7bcd1293752b4d5d20778096d02cef31f01bab6a12e12e7880c5e79d"
#: KCross()(fake, real, source) of make_pair((128, 128), seed=s) for s in 0..2, then (fake, real) without source
PINNED_SCORES = (0.227101, 0.192989, 0.212952, 0.227113)


@pytest.fixture(scope="module")
def metric() -> KCross:
    if not (bundled_dir() / "kcross.safetensors").exists():
        pytest.skip("no bundled weights in this build")
    return KCross()


def test_pinned_file(metric: KCross):
    assert sha256_file(bundled_dir() / "kcross.safetensors") == PINNED_SHA256


def test_golden_scores(metric: KCross):
    got = []
    for seed in range(3):
        fake, real, source, _ = make_pair((128, 128), seed=seed)
        got.append(float(metric(fake, real, source)))
    fake, real, _, _ = make_pair((128, 128), seed=0)
    got.append(float(metric(fake, real)))
    assert got == pytest.approx(list(PINNED_SCORES), abs=2e-4)


#: Known misses of the shipped weights, kept visible: equispaced undersampling R=4 vs R=6 on phantom
#: seed 0 scores 0.0992 vs 0.1019 (zero-filled equispaced undersampling of this phantom; validation
#: subjects: every step ordered, docs/results-ladders.md). strict: a fix makes it fail.
KNOWN_MISSES = {("undersampling_equispaced", 0)}


def _ladder_cases() -> list:
    return [
        pytest.param(family, seed, marks=pytest.mark.xfail(strict=True, reason="known miss, see KNOWN_MISSES"))
        if (family, seed) in KNOWN_MISSES else pytest.param(family, seed)
        for family in LADDERS for seed in (0, 1)
    ]


@pytest.mark.parametrize("family, seed", _ladder_cases())
def test_phantom_ladders_score_strictly_decreasing(metric: KCross, family: str, seed: int):
    ph = make_phantom((192, 192), contrasts=("t1", "t2"), seed=seed)
    real, source, mask = ph["t2"], ph["t1"], ph["mask"]
    spec = LADDERS[family]
    levels = torch.cat([spec.apply(real, float(s), mask, 1234 + seed) for s in spec.levels])
    scores = metric(levels, real.expand_as(levels), source.expand_as(levels))
    assert (scores[1:] < scores[:-1]).all(), f"{family}: {scores.tolist()}"
