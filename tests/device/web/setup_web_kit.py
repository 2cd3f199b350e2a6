"""What the setup web's test files read off its pages: the CSRF token and the text a person sees."""

from __future__ import annotations

import html
import re

PASSWORD = "correct horse battery"


def csrf(page) -> str:
    """The CSRF token of a Flask test response's form."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True))
    assert found, "the page has no CSRF field"
    return found.group(1)


def text(response) -> str:
    """The response's visible text, tags removed and whitespace folded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))))
