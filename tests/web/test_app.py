"""app.py itself: the page's theme, and `python app.py` taking the flags of `qa serve`."""

from __future__ import annotations

import app


def test_the_theme_uses_system_fonts_only():
    theme = app.theme()
    assert theme._font_css == [] and theme._stylesheets == []  # no @font-face, nothing fetched
    assert theme.font.startswith("ui-sans-serif") and "Source Sans" not in theme.font
