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


class WholeNumber(click.IntRange):
    """click's IntRange, named as what is typed: "'1.5' is not a valid integer", not "... integer range"."""

    name = "integer"


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
        threads = WholeNumber(1).convert(value, param, ctx)  # its messages say "integer", not this type's name
        try:
            check_threads(threads)
        except ConfigError as err:
            self.fail(str(err), param, ctx)
        return threads


class KList(click.ParamType):
    """A comma-separated list of accumulation factors, e.g. 1,2,4,8; with `auto`, also the word auto (the command
    chooses: `mlflow run` passes every parameter, so a default that depends on another option must be a word)."""

    name = "k-list"

    def __init__(self, auto: bool = False):
        self.auto = auto

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        if self.auto and str(value).strip() == "auto":
            return "auto"
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
