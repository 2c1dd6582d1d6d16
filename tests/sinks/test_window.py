"""The live window, on a machine without a GUI."""

from __future__ import annotations

import pytest

from facesense.errors import ConfigError
from facesense.sinks.window import gui_available


def test_headless_opencv_is_reported_clearly() -> None:
    ok, reason = gui_available()
    if ok:
        pytest.skip("this machine can show windows")
    assert reason and "\n" not in reason


def test_window_sink_refuses_to_start_without_a_gui() -> None:
    from facesense.sinks.window import WindowSink

    if gui_available()[0]:
        pytest.skip("this machine can show windows")
    with pytest.raises(ConfigError, match="cannot open a window"):
        WindowSink()


def test_no_display_variable_means_no_window(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import cv2

    if not sys.platform.startswith("linux"):
        pytest.skip("DISPLAY matters on Linux only")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           GTK3\n")
    ok, reason = gui_available()
    assert not ok and "DISPLAY" in reason
