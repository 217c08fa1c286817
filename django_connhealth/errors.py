"""The error raised for a malformed setting or environment variable."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class SettingError(ImproperlyConfigured):
    """A malformed value: ``problem`` names it, ``fix`` says what to do."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem
        self.fix = fix

    @property
    def hint(self) -> str:
        return self.fix[:1].upper() + self.fix[1:]
