"""The critical part in the comparison, from a synthetic store: its sentence (B_crit beside B_noise, whether they
agree within their intervals, which K scale perfectly) in report.html and the terminal, its two plots in the
compare folder, a fit per target, and nothing of it where the experiment has no critical runs."""
from __future__ import annotations

import html
import re

import pytest
from mlflow.entities import Metric, Param, RunTag

from gradacc.names import CRITICAL
from gradacc.study.compare import run_compare
from tests.support.compare import T0_MS, SyntheticStore, config_params, fresh_store

S_MIN, E_MIN = 10.0, 20480.0  # B_crit = 2048: B <= 409.6 (K = 1, 2, 4 at 64 images a micro-batch) scale perfectly
WOBBLE = {1: 1.03, 2: 0.97, 4: 1.02, 8: 0.98, 16: 1.01, 32: 0.99}  # so that the bootstrap has a spread


def log_child(store: SyntheticStore, k: int, target: float, updates: float, reached: bool = True,
              b_simple: float | None = None, seed: int = 42) -> str:
    """A critical child as gradacc logs it: the protocol's params (epoch cap 6, a variant, with K=32 outside the
    protocol's K: 'k=32,epochs=6'), part critical, its summaries."""
    start = T0_MS + 60_000 * store.count
    store.count += 1
    params = config_params(k, seed, "device", "cpu", "Test CPU", 6, 2, False) | {"target": str(target)}
    metrics = {"target": target, "target_reached": float(reached), "updates_to_target": updates,
               "images_to_target": updates * 64 * k}
    if b_simple is not None:
        metrics["noise_scale_simple_to_target"] = b_simple
    run = store.client.create_run(store.exp_id, start_time=start, run_name=f"critical-k{k}")
    store.client.log_batch(run.info.run_id, params=[Param(n, v) for n, v in params.items()],
                           tags=[RunTag("gradacc.part", CRITICAL), RunTag("gradacc.smoke", "false"),
                                 RunTag("gradacc.variant", ("k=32," if k == 32 else "") + "epochs=6")],
                           metrics=[Metric(n, float(v), 0, 0) for n, v in metrics.items()])
    store.client.set_terminated(run.info.run_id, "FINISHED", end_time=start + 30_000)
    return run.info.run_id


def study_with_critical(tmp_path, monkeypatch, b_simple: dict[int, float], censored_32: float | None = None):
    fresh_store(tmp_path, monkeypatch)
    store = SyntheticStore()
    store.sweep(ks=(1, 2), parts=("converge",))  # the study's other runs: compare needs a part to compare
    log_child(store, 1, 2.0, 999.0)  # an older run of K=1, seed 42: the newest is taken, this one left out
    for k in (1, 2, 4, 8, 16) + (() if censored_32 is not None else (32,)):
        log_child(store, k, 2.0, round((S_MIN + E_MIN / (64 * k)) * WOBBLE[k]), b_simple=b_simple.get(k))
    if censored_32 is not None:
        log_child(store, 32, 2.0, censored_32, reached=False, b_simple=b_simple.get(32))
    return store


def compare(tmp_path, capsys) -> tuple[str, str, str]:
    """(the report's critical section, the terminal's critical line, the output folder)."""
    report = run_compare(output_dir=tmp_path / "out", log=False)
    page = report.read_text()
    section = html.unescape(page[page.index("<h2 id='critical'>"):]) if "<h2 id='critical'>" in page else ""
    line = next((s for s in capsys.readouterr().out.splitlines() if s.startswith("critical batch")), "")
    return section, line, report.parent


def b_crit_interval(text: str) -> tuple[float, float, float]:
    found = re.search(r"B_crit = (\d+) \(95% (\d+)-(\d+), bootstrap over pairs\)", text)
    assert found, text
    return tuple(float(v) for v in found.groups())


def test_agreeing_noise_scale_and_the_perfect_scaling_k(tmp_path, monkeypatch, capsys):
    study_with_critical(tmp_path, monkeypatch, {2: 1900.0, 4: 2100.0, 8: 2000.0, 16: 2050.0, 32: 1950.0})
    section, line, folder = compare(tmp_path, capsys)
    b_crit, low, high = b_crit_interval(section)
    assert b_crit == pytest.approx(2048, rel=0.1) and low < 2048 < high  # the fit recovered from the store
    assert "B_noise = 2000 (95% 1902-2098): the two agree within their 95% intervals." in section
    assert "Perfect scaling (E within 20% of E_min on the fit) at K = 1, 2, 4." in section
    assert line.startswith("critical batch (target loss 2, Test CPU (cpu), loader device, 2 threads")
    assert "the two agree" in line
    assert "<td class=n>8</td><td class=n>512</td><td class=n>42</td><td class=n>yes</td>" in section
    assert section.count("<tr><td class=n>1</td>") == 1 and "<td class=n>999</td>" not in section
    assert section.count("<h3>target loss") == 1 and "<tr><td class=n>32</td>" in section  # K=32 variant: same fit
    assert "diminishing returns" in section and section.count("<img alt='critical_") == 2
    for png in ("critical_updates.png", "critical_tradeoff.png"):
        assert (folder / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_noise_scale_far_below_disagrees_and_a_censored_bound_is_weighed(tmp_path, monkeypatch, capsys):
    fit_at_32 = S_MIN + E_MIN / 2048
    study_with_critical(tmp_path, monkeypatch, {2: 190.0, 4: 200.0, 8: 210.0}, censored_32=fit_at_32 * 2)
    section, line, _ = compare(tmp_path, capsys)
    assert "B_noise = 200 (95% 175-225): the two disagree (their 95% intervals do not overlap)." in section
    assert "Not reached yet above the fit, contradicting it: B=2048 (S > 40)." in section
    assert "<td class=n>32</td><td class=n>2048</td><td class=n>42</td><td class=n>no</td><td class=n>>= 40</td>" \
        in section
    assert "the two disagree" in line


def test_each_target_is_fitted_apart(tmp_path, monkeypatch, capsys):
    store = study_with_critical(tmp_path, monkeypatch, {})
    log_child(store, 1, 1.5, 400.0)  # one K at another target: no fit of its own, and not in the first one
    section, _, folder = compare(tmp_path, capsys)
    assert section.count("<h3>target loss") == 2
    assert "No B_noise was measured beside it." in section and "The critical batch size is not determined" in section
    assert len(list((folder / "plots").glob("critical-*/critical_updates.png"))) == 2


def test_no_critical_runs_no_critical_section(tmp_path, monkeypatch, capsys):
    fresh_store(tmp_path, monkeypatch)
    SyntheticStore().sweep(ks=(1, 2), parts=("converge",))
    section, line, folder = compare(tmp_path, capsys)
    assert section == "" and line == "" and not list(folder.rglob("critical_*.png"))
