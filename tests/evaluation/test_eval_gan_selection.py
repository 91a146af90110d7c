"""kcross_metric.evaluation.gan_selection (behind benchmarks/stage2_gan_selection.py): the pure parts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kcross_metric.evaluation.gan_selection import (
    SETTINGS,
    VECTOR_KEYS,
    epoch_pair_accuracy,
    mean_epoch_srocc,
    merge_vector_banks,
    select_rows,
)


def test_setting_names_are_the_run_folders_of_the_model_card_table():
    # the run folders (and so the caches of earlier runs) are named after the settings
    assert len(SETTINGS) == 9 and len(set(SETTINGS)) == 9
    assert SETTINGS[0].name == "weight_decay0.0001_epochs25_temperature0.05_balance_pair_setsTrue"
    assert SETTINGS[5].name == "weight_decay0.001_epochs25_temperature0.05_balance_pair_setsFalse"
    config = SETTINGS[3].config()
    assert (config.weight_decay, config.epochs, config.temperature, config.balance_pair_sets) == (1e-3, 25, 0.1, True)
    assert (config.lr, config.batch_size, config.threads, config.seed) == (1e-3, 256, 2, 0)


def _bank(n: int, offset: float) -> dict:
    bank = {k: torch.arange(n, dtype=torch.float32)[:, None] + offset for k in VECTOR_KEYS}
    bank["vm"] = torch.zeros(n, 1)  # not a vector key: dropped
    bank["rules"] = [f"rule{i}:f" for i in range(n)]
    return bank


def test_select_and_merge_keep_the_vector_columns_in_order():
    a, b = _bank(4, 0.0), _bank(2, 100.0)
    picked = select_rows(a, np.array([True, False, False, True]))
    assert picked["vc"][:, 0].tolist() == [0.0, 3.0] and picked["rules"] == ["rule0:f", "rule3:f"]
    merged = merge_vector_banks(picked, b, balance=False)
    assert set(merged) == {*VECTOR_KEYS, "rules"}
    assert merged["vt"][:, 0].tolist() == [0.0, 3.0, 100.0, 101.0]
    balanced = merge_vector_banks(a, b, balance=True)
    # each bank the same total weight, mean 1
    assert balanced["weight"][:4].sum() == pytest.approx(balanced["weight"][4:].sum())
    assert balanced["weight"].mean() == pytest.approx(1.0)


def test_epoch_pair_accuracy_counts_ties_half():
    scores = np.array([1.0, 0.0, 2.0, 2.0, 0.0, 5.0])
    ia, ib = np.array([0, 2, 4]), np.array([1, 3, 5])
    # pair 1: a scores higher and is better; pair 2: tie; pair 3: b scores higher but a is better
    assert epoch_pair_accuracy(scores, ia, ib, np.array([True, True, True])) == pytest.approx(0.5)


def test_mean_epoch_srocc_averages_over_generators():
    rows = [{"generator": g, "epoch": e} for g in ("a", "b") for e in (1, 2, 3)]
    scores = np.array([1.0, 2.0, 3.0, 3.0, 2.0, 1.0])  # a rises with the epoch, b falls
    assert mean_epoch_srocc(scores, rows) == pytest.approx(0.0)
    assert mean_epoch_srocc(scores[[0, 1, 2, 5, 4, 3]], rows) == pytest.approx(1.0)
