"""The Part 4 model's tables in markdown: predictions per interconnect and N, the best N, the check against real
DDP runs, and the link presets with their sources."""
from __future__ import annotations

from gradacc.analysis.commmodel.model import LATENCY_NOTE
from gradacc.analysis.text import short

SHOWN_NS = (1, 2, 4, 8, 16, 32, 64)


def summary_markdown(rows, best, ns=SHOWN_NS, best_measured=None) -> str:
    """Per interconnect and N: update ms, throughput, speed-up, efficiency (and time to target)."""
    head = "| interconnect | N | update ms | all-reduce ms (exposed) | throughput img/s | speed-up | efficiency | " \
           "time to target s |\n|---|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        if r["workers"] not in ns:
            continue
        target = f"{short(r['time_to_target_s'])}{' (extrap.)' if r['extrapolated'] else ''}" \
            if "time_to_target_s" in r else ""
        lines.append(f"| {r['interconnect']} | {r['workers']} | {short(r['update_s'] * 1e3)} | "
                     f"{short(r['allreduce_s'] * 1e3)} ({short(r['exposed_s'] * 1e3)}) | "
                     f"{short(r['throughput_img_s'])} | "
                     f"{r['speedup']:.2f} | {r['efficiency'] * 100:.0f}% | {target} |")
    best_measured = best_measured or {}
    best_lines = [f"| {name} | {b['workers']} | {short(b['time_to_target_s'])} | "
                  f"{'extrapolated' if b['extrapolated'] else 'measured batch'} | "
                  + (f"{best_measured[name]['workers']} ({short(best_measured[name]['time_to_target_s'])} s) |"
                     if name in best_measured else " |") for name, b in best.items()]
    table = head + "\n".join(lines) + "\n"
    if best_lines:
        table += ("\n| interconnect | best N (time to target) | time s | updates at that batch | best N within the "
                  "measured batches |\n|---|---|---|---|---|\n" + "\n".join(best_lines) + "\n")
    return table


def plus_minus(value: float, half: float | None = None, scale: float = 1e3) -> str:
    """'123 ± 4' (ms by default); a missing interval or value shown as such."""
    if value is None or value != value:
        return "n/a"
    text = short(value * scale)
    if half is None or half != half or half <= 1e-9 * abs(value):  # no interval, or one below rounding
        return text
    return f"{text} ± {short(half * scale)}"


def check_markdown(checks) -> str:
    """Each DDP run, measured / predicted per term (ms, 95% intervals), the update's error and the link used."""
    if not checks:
        return ("No DDP runs with per-rank times and a micro run of their device and threads in the store (run "
                "`gradacc micro --k 1 --threads T` and `gradacc ddp --workers N --threads T`).\n")
    head = ("| run | N | straggler ms (mean) | cores shared | compute ms | wait ms | all-reduce ms | step ms | "
            "update ms | predicted - measured | unmodelled ms | link |\n" + "|---" * 12 + "|\n")
    lines = []
    for c in checks:
        cells = [f"{plus_minus(*c[f'measured_{t}_s'])} / {plus_minus(*c[f'predicted_{t}_s'])}"
                 for t in ("compute", "wait", "collective")]
        lines.append(f"| {c['run']} | {c['workers']} | {c['straggle_ms']:g} | {c['cores_shared']:.2g}x | "
                     + " | ".join(cells)
                     + f" | {plus_minus(c['measured_step_s'])} / {plus_minus(c['predicted_step_s'])}"
                     f" | {plus_minus(*c['measured_update_s'])} / {plus_minus(*c['predicted_update_s'])} | "
                     f"{c['error'] * 100:+.0f}%{'' if c['within'] else ' (beyond 15%)'} | "
                     f"{plus_minus(c['unmodelled_s'])} | {c['link']} |")
    return head + "\n".join(lines) + ("\n\nEach cell: measured / predicted, mean ± 95% interval, middle 60% of "
                                     "updates. Compute and step: micro runs x cores shared; wait: the expected "
                                     "slowest of one draw per rank from the run's per-rank compute, minus rank 0's "
                                     "mean; all-reduce: the benchmark's fitted link (the slowest rank's hook time "
                                     "measured); unmodelled: the measured update minus rank 0's compute, hook and "
                                     "step (fetching the batch, zeroing the gradients).\n")


def presets_markdown(links) -> str:
    return ("| key | link | bandwidth used (GB/s per direction) | as stated | latency us | source |\n"
            "|---|---|---|---|---|---|\n" + "".join(
                f"| {x.key} | {x.name} | {x.bandwidth_gb_s:g} | {x.stated} | {x.latency_s * 1e6:g} | {x.source} |\n"
                for x in links) + f"\nGB/s = 1e9 bytes/s; Gb/s = 1e9 bits/s = GB/s / 8; a network's bandwidth is per "
                                  f"card (port), and a node's gradient crosses the network split over its cards "
                                  f"(--nics-per-node, default one per GPU); {LATENCY_NOTE}.\n")
