"""The benchmark scripts name the shared data folder beside the checkout.

The library never guesses where real data live; a script run from a checkout whose ``../shared``
holds the project's data sets ``$KCROSS_SHARED_DIR`` to it, unless the caller already chose one.
"""

from __future__ import annotations

import os
from pathlib import Path

from kcross_metric._util.shared_data import ENV_VAR

CHECKOUT_SHARED = Path(__file__).resolve().parents[2] / "shared"


def name_checkout_shared() -> None:
    """Set ``$KCROSS_SHARED_DIR`` to ``../shared`` beside the checkout if it holds ``data/``."""
    if CHECKOUT_SHARED.joinpath("data").is_dir():
        os.environ.setdefault(ENV_VAR, str(CHECKOUT_SHARED))
