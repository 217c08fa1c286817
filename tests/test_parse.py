"""Parsers of the numbers users write (``django_connhealth.parse``); no Redis needed.

Counts are also parsed, and their errors checked, through every variable that takes
one in test_sizing.py; seconds through the settings in test_views.py and the
command's ``--watch`` in test_connhealth.py.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_connhealth import defaults
from django_connhealth.parse import parse_count


def test_parse_count_message() -> None:
    with pytest.raises(ImproperlyConfigured) as excinfo:
        parse_count("WEB_CONCURRENCY", "2.5")
    assert str(excinfo.value) == (
        f"WEB_CONCURRENCY='2.5' is not valid: set it to a whole number from 1 "
        f"to {defaults.MAX_COUNT}, or unset it."
    )
