"""The floors hold at run time too: analysis/ works without torch, mlflow or click, and the CLI starts light.
(import-linter checks the imports statically in CI; these check what a process actually loads.)"""
import pkgutil
import subprocess
import sys

import gradacc.analysis


def loaded_after(code: str, watched=("torch", "torchvision", "mlflow", "click")) -> list[str]:
    probe = f"import sys; {code}; print(sorted(m for m in {watched!r} if m in sys.modules))"
    return eval(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout)


def test_analysis_imports_neither_torch_nor_mlflow_nor_click():
    assert loaded_after("import gradacc.analysis") == []
    modules = [m.name for m in pkgutil.walk_packages(gradacc.analysis.__path__, "gradacc.analysis.")]
    assert "gradacc.analysis.report.html" in modules and "gradacc.analysis.plots.compare" in modules
    assert loaded_after("; ".join(f"import {m}" for m in modules)) == []


def test_core_protocol_needs_no_torch():
    """The protocol's config (read by analysis/ and the CLI) loads without torch."""
    assert loaded_after("import gradacc.core.config, gradacc.core.noise, gradacc.names") == []
