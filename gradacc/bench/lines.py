"""A benchmark line (two figures measured side by side, their ratio and the goal it is held to), the lines that
`gradacc bench` knows, and the temporary tracking store its runs go to."""
from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LINES = ("streams", "tracking", "logging", "noise", "system-metrics", "graph", "e2e", "seeds")  # in this order


@dataclass
class Line:
    """One benchmark line: `a` against `b` in `unit`, the ratio a/b, and the goal it is held to, if any."""

    name: str
    a_label: str
    a: float
    b_label: str
    b: float
    unit: str
    goal: str = ""  # e.g. "<= 1.01"
    note: str = ""
    parts: dict[str, float] = field(default_factory=dict)  # `a` by kind, in `unit` (the study's fixed costs)

    @property
    def ratio(self) -> float:
        return self.a / self.b if self.b else float("nan")

    @property
    def met(self) -> bool | None:
        if not self.goal:
            return None
        op, bound = self.goal.split()
        return self.ratio <= float(bound) if op == "<=" else self.ratio >= float(bound)

    def text(self) -> str:
        verdict = "" if self.met is None else f"  goal {self.goal}: {'met' if self.met else 'MISSED'}"
        parts = ", ".join(f"{kind} {value:.2f}" for kind, value in self.parts.items())
        return (f"{self.name}: {self.a_label} {self.a:.4g} {self.unit} vs {self.b_label} {self.b:.4g} {self.unit}"
                f"  ratio {self.ratio:.3f}{verdict}" + (f"\n    {self.note}" if self.note else "")
                + (f"\n    by kind ({self.unit}): {parts}" if parts else ""))


@contextlib.contextmanager
def tracking_store(uri: str):
    """MLFLOW_TRACKING_URI = uri for the block (the bench's runs stay out of the user's store), then as before."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield uri
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


@contextlib.contextmanager
def temporary_store():
    """A fresh sqlite store in a temporary folder for the block, the working directory there too (the store's
    artifacts, ./mlruns, land in it); then both as before."""
    with tempfile.TemporaryDirectory(prefix="gradacc-bench-store-") as tmp, \
            tracking_store(f"sqlite:///{Path(tmp) / 'mlflow.db'}"):
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            yield tmp
        finally:
            os.chdir(cwd)
