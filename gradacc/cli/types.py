"""The CLI's parameter types: whole numbers written as such, thread counts, lists of K."""
from __future__ import annotations

import math
import re

import click

from gradacc.core.cores import check_threads
from gradacc.core.errors import ConfigError
from gradacc.names import STUDY_ID_PATTERN, STUDY_ID_RULE


def repeated(values) -> list:
    """The values listed more than once, sorted: each configuration (a K, a part) runs once, so a repeat would
    only be reported as reused."""
    return sorted({v for v in values if values.count(v) > 1})


class WholeNumber(click.ParamType):
    """An integer written as one (no '1.5', no 'abc'), at least `minimum` (and at most `maximum`, for `why`)."""

    name = "integer"

    def __init__(self, minimum: int, maximum: int | None = None, why: str = ""):
        self.minimum, self.maximum, self.why = minimum, maximum, why

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
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{number} is above the maximum of {self.maximum}" + (f" ({self.why})" if self.why else ""),
                      param, ctx)
        return number


class StudyId(click.ParamType):
    """A study id (it becomes part of the tag key `gradacc.study.<id>`), or the command's keyword (sweep: new,
    compare: all): checked when the command line is read, before a sweep measures anything. The other command's
    keyword is no id: a study named 'all' could never be compared alone."""

    name = "study"
    KEYWORDS = ("new", "all")

    def __init__(self, keyword: str):
        self.keyword = keyword

    def convert(self, value, param, ctx):
        text = str(value).strip()
        if text in ("", self.keyword):
            return text
        if text in self.KEYWORDS:
            self.fail(f"{text!r} is a keyword, not a study id (here: an id, or {self.keyword})", param, ctx)
        if not re.fullmatch(STUDY_ID_PATTERN, text):
            self.fail(f"study id {text!r} is not valid: {STUDY_ID_RULE} (or {self.keyword})", param, ctx)
        return text


class FiniteRange(click.FloatRange):
    """click's FloatRange without nan and inf, which it lets through ('nan' compares false with both bounds)."""

    name = "float"  # click's own says "'x' is not a valid float range"

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return super().convert(number, param, ctx)


class Threads(WholeNumber):
    """'auto' (torch's default) or a positive thread count, at most the cores unless forced (check_threads)."""

    name = "auto|integer"

    def __init__(self):
        super().__init__(1)

    def convert(self, value, param, ctx):
        if str(value).strip() == "auto":
            return "auto"
        threads = super().convert(value, param, ctx)
        try:
            check_threads(threads)
        except ConfigError as err:
            self.fail(str(err), param, ctx)
        return threads


class KList(click.ParamType):
    """A comma-separated list of accumulation factors, e.g. 1,2,4,8."""

    name = "k-list"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        parts = [p for p in str(value).split(",") if p.strip()]
        if not parts:
            self.fail("give at least one k", param, ctx)
        ks = tuple(WholeNumber(1).convert(p, param, ctx) for p in parts)
        if repeated(ks):
            self.fail(f"k={', '.join(map(str, repeated(ks)))} listed more than once", param, ctx)
        return ks


class SmokeChoice(click.ParamType):
    """true, false or auto (the full-protocol runs, or the smoke runs where there is none)."""

    name = "true|false|auto"

    def convert(self, value, param, ctx):
        text = str(value).strip().lower()
        if text == "auto":
            return "auto"
        return click.BOOL.convert(value, param, ctx)
