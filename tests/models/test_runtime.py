"""Sessions built by facesense.models.runtime.create_session."""

from __future__ import annotations

import time

import numpy as np

from facesense.models import create_session, mtcnn_onnx
from facesense.models.mtcnn_onnx import INPUT_NAME


def test_workers_stop_spinning_when_a_run_returns() -> None:
    # ONNX Runtime's idle workers spin for ~65 ms after each run by default (measured on
    # 2 cores), taking a core from whatever model runs next; facesense's sessions stop them.
    session = create_session(mtcnn_onnx.mtcnn_model("mtcnn_onet"), threads=2)
    crops = np.random.default_rng(0).integers(0, 256, (16, 48, 48, 3), dtype=np.uint8)
    for _ in range(3):
        session.run(None, {INPUT_NAME: crops})
    before = time.process_time()
    time.sleep(0.3)
    assert time.process_time() - before < 0.02
