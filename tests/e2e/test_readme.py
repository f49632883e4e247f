"""The README's commands and snippets, taken from the README itself and run in its order, as a new user would:
the smoke main job, a converge run, the Python queries, `gradacc compare`, `mlflow run -e compare`; all against one
store, in a copy of the repository (what they write stays out of the checkout), on a --smoke-sized data root."""
from __future__ import annotations

import re
import shutil
import sys

import pytest

from tests.support.cifar import write_data_root
from tests.support.e2e import REPO_ROOT, isolated_store, run_process

pytestmark = pytest.mark.slow

BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.S | re.M)
# Blocks a test cannot run, each with its reason; every other block of the README runs.
NOT_RUN = {
    "python3 -m venv": "sets up the environment the tests already run in",
    "python -m pytest": "the tests themselves",
    "mlflow ui": "a server for the browser (the UI is checked by hand; tests/e2e/test_server.py runs a server)",
}
FULL_STUDY = "mlflow run . --env-manager local"  # 12 full-protocol runs: its smoke form, run here, is the same code
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "mlruns", "mlflow.db*", "compare-output", "commmodel-output",
                                     "gradacc-unsent", "data", "*.egg-info", "__pycache__", ".pytest_cache")


def readme_blocks() -> list[tuple[str, str]]:
    return [(lang, code.strip()) for lang, code in BLOCK.findall((REPO_ROOT / "README.md").read_text())]


def skip_reason(code: str) -> str | None:
    if code == FULL_STUDY:
        return "the full study (its smoke form runs here)"
    return next((why for start, why in NOT_RUN.items() if code.startswith(start)), None)


def run_block(lang: str, code: str):
    args = [sys.executable, "-c", code] if lang == "python" else ["bash", "-euo", "pipefail", "-c", code]
    return run_process(args, timeout=600)  # in the current folder: the copy, where isolated_store put us


def test_readme_blocks_are_found():
    blocks = readme_blocks()
    assert len(blocks) >= 8
    assert [code for _lang, code in blocks if skip_reason(code)] == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'", FULL_STUDY,
        "python -m pytest -q", "mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db"]


def test_readme_commands_and_snippets_work_in_order(tmp_path):
    project = tmp_path / "gradacc"
    shutil.copytree(REPO_ROOT, project, ignore=COPY_IGNORE)
    data = write_data_root(tmp_path / "cifar")
    outputs = []
    with isolated_store(project, data):
        for lang, code in readme_blocks():
            if skip_reason(code):
                continue
            proc = run_block(lang, code)
            assert proc.returncode == 0, f"README block failed:\n{code}\n--- stderr:\n{proc.stderr[-3000:]}"
            assert "Traceback" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr[-3000:]
            outputs.append((code, proc.stdout, proc.stderr))
        from mlflow import MlflowClient
        client = MlflowClient()
        experiments = {e.name: e.experiment_id for e in client.search_experiments()}
        runs = client.search_runs([experiments["Default"]], max_results=1000)
    assert list(experiments) == ["Default"]  # every entry path wrote into the same experiment
    # `mlflow run` logs an empty parameter as '' (shell-quoted): no default is empty
    assert not [(r.info.run_name, k) for r in runs for k, v in r.data.params.items() if v in ("", "''")]
    parts = sorted(r.data.tags.get("gradacc.part", "?") for r in runs)
    assert parts.count("converge") == 5 and parts.count("compare") == 3 and parts.count("sweep") == 1
    by_code = {code: (out, err) for code, out, err in outputs}
    load_runs_out = next(out for code, (out, _e) in by_code.items() if "load_runs(" in code)
    assert len(re.findall(r"converge-k\d-smoke", load_runs_out)) == 5  # the study's four and the README's K=4
    search_out = next(out for code, (out, _e) in by_code.items() if "mlflow.search_runs(" in code)
    assert len(re.findall(r"converge-k\d-smoke", search_out)) == 5
    compared = [re.search(r"(\d+) runs in 1 setting", err).group(1)
                for code, (_o, err) in by_code.items() if code in ("gradacc compare", FULL_STUDY + " -e compare")]
    # The same runs by either door: the study's 8 (micro and converge per K), where the README's converge K=4 (same
    # configuration and seed, newer) stands in for the study's own, as compare keeps the newest run of each.
    assert compared == ["8", "8"]
    assert (project / "compare-output" / "experiment-Default" / "report.html").exists()
