"""LightGBM predictions without ``Booster.predict``'s per-call set-up, for the worker's small micro-batches.

``Booster.predict`` builds a fresh ``_InnerPredictor`` on every call (asking the library for the
class count and the model's feature count, copying the parameters), then checks and converts the
input: a fixed cost of tens of microseconds, which a micro-batch of a few declarations pays in
full. :class:`Predictor` does that set-up once per booster and then makes the same library call
that ``Booster.predict`` makes for a dense float64 matrix (``LGBM_BoosterPredictForMat``, normal
prediction, the booster's best iteration, one thread), so its scores are the same numbers, bit
for bit; ``tests/unit/riskmodels/test_fastpredict.py`` holds it to that. Anything it does not
expect (another dtype or layout, a multi-class model, a library without the call) goes through
``Booster.predict`` instead.
"""

from __future__ import annotations

import ctypes
from typing import Any, cast

import lightgbm as lgb
import numpy as np

# The library handle lightgbm itself calls through (None in a release without it: the slow path).
_LIB: Any = getattr(lgb.basic, "_LIB", None)
_safe_call: Any = getattr(lgb.basic, "_safe_call", None)

_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_ROW_MAJOR = 1
_PREDICT_NORMAL = 0  # C_API_PREDICT_NORMAL: transformed scores, as Booster.predict by default
PARAMETERS = "num_threads=1"  # as Booster.predict(X, num_threads=1) passes them


class Predictor:
    """``booster.predict(X, num_threads=1)`` for C-contiguous float64 matrices, without its set-up."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster  # keeps the handle alive
        self.features = booster.num_feature()
        self.direct = _LIB is not None and _safe_call is not None and booster.num_model_per_iteration() == 1
        # Booster.predict with num_iteration=None and start_iteration=0 uses the best iteration.
        self._iteration = ctypes.c_int(booster.best_iteration)
        self._parameters = ctypes.c_char_p(PARAMETERS.encode())

    def predict(self, X: np.ndarray) -> np.ndarray:
        if not (self.direct and X.ndim == 2 and X.dtype == np.float64 and X.flags.c_contiguous
                and X.shape[1] == self.features and 0 < X.shape[0] < 2**31 - 1):
            return cast(np.ndarray, self.booster.predict(X, num_threads=1))
        out = np.empty(X.shape[0], dtype=np.float64)
        written = ctypes.c_int64(0)
        handle: Any = self.booster._handle
        _safe_call(_LIB.LGBM_BoosterPredictForMat(
            handle, X.ctypes.data_as(ctypes.c_void_p), ctypes.c_int(_FLOAT64), ctypes.c_int32(X.shape[0]),
            ctypes.c_int32(X.shape[1]), ctypes.c_int(_ROW_MAJOR), ctypes.c_int(_PREDICT_NORMAL), ctypes.c_int(0),
            self._iteration, self._parameters, ctypes.byref(written), out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))))
        if written.value != X.shape[0]:
            raise ValueError(f"LightGBM wrote {written.value} predictions for {X.shape[0]} rows")
        return out
