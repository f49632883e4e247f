"""The CLI's parameter types: whole numbers written as such, thread counts, lists of K."""
from __future__ import annotations

import click


class WholeNumber(click.ParamType):
    """An integer written as one (no '1.5', no 'abc'), at least `minimum`."""

    name = "integer"

    def __init__(self, minimum: int):
        self.minimum = minimum

    def convert(self, value, param, ctx):
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip(), 10)
            except ValueError:
                self.fail(f"{value!r} is not a whole number", param, ctx)
        if number < self.minimum:
            self.fail(f"{number} is below the minimum of {self.minimum}", param, ctx)
        return number


class Threads(WholeNumber):
    """'auto' (torch's default) or a positive thread count."""

    name = "auto|integer"

    def __init__(self):
        super().__init__(1)

    def convert(self, value, param, ctx):
        return "auto" if str(value).strip() == "auto" else super().convert(value, param, ctx)


class KList(click.ParamType):
    """A comma-separated list of accumulation factors, e.g. 1,2,4,8."""

    name = "k-list"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail("give at least one k", param, ctx)
        return tuple(WholeNumber(1).convert(p, param, ctx) for p in parts)


class SmokeChoice(click.ParamType):
    """true, false or auto (the full-protocol runs, or the smoke runs where there is none)."""

    name = "true|false|auto"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        return click.BOOL.convert(value, param, ctx)
