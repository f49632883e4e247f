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


def check_markdown(checks) -> str:
    if not checks:
        return "No real DDP runs in the store (run `gradacc ddp --workers N`).\n"
    head = ("| run | N | compute ms measured / predicted | all-reduce ms measured / predicted wait + all-reduce | "
            "update s measured / predicted | cores shared | link |\n|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {c['run']} | {c['workers']} | {short(c['measured_compute_ms'])} / {short(c['predicted_compute_ms'])} | "
        f"{short(c['measured_allreduce_ms'])} / {short(c['predicted_wait_plus_allreduce_ms'])} | "
        f"{c['measured_update_s']:.3g} / {c['predicted_update_s']:.3g} | {c['cores_shared']:.2g}x | {c['link']} |\n"
        for c in checks)


def presets_markdown(links) -> str:
    return ("| key | link | bandwidth used (GB/s per direction) | as stated | latency us | source |\n"
            "|---|---|---|---|---|---|\n" + "".join(
                f"| {x.key} | {x.name} | {x.bandwidth_gb_s:g} | {x.stated} | {x.latency_s * 1e6:g} | {x.source} |\n"
                for x in links) + f"\nGB/s = 1e9 bytes/s; Gb/s = 1e9 bits/s = GB/s / 8; a network's bandwidth is per "
                                  f"card (port), and a node's gradient crosses the network split over its cards "
                                  f"(--nics-per-node, default one per GPU); {LATENCY_NOTE}.\n")
