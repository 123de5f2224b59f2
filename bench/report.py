#!/usr/bin/env python3
"""Renders a bench/run.py results file as a Markdown table and an SVG chart (standard library only).

usage: report.py bench/results/<name>.json     (writes <name>.md and <name>.svg beside it)
"""
import json
import math
import os
import sys
from xml.sax.saxutils import escape

MIB = 1024 * 1024


def fmt_rps(value):
    return "—" if value is None else f"{value:,.0f}"


def fmt_ms(value):
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:,.0f}"


def fmt_load(load):
    return "/".join(f"{value:.2f}" for value in load) if load else "?"


def fmt_ratio(value):
    return "—" if value is None else f"{value:.2f}"


def flag(target):
    if target is None:
        return ""
    return "**PASS**" if target["pass"] else "**FAIL**"


def errors_text(errors):
    if not errors:
        return "0"
    parts = [f"{count} {kind}" for kind, count in errors.items() if count]
    return ", ".join(parts) if parts else "0"


def served_text(window):
    """How the measured window's answers were served, from the instance's cache stats."""
    if not window:
        return ""
    total = window["l1"] + window["l2"] + window["misses"] + window["bypass"] + window["stale"]
    if total == 0:
        return ""
    parts = []
    for key, label in (("l1", "HIT L1"), ("l2", "HIT L2"), ("misses", "MISS"), ("bypass", "BYPASS"), ("stale", "STALE")):
        if window[key]:
            share = 100.0 * window[key] / total
            parts.append(f"{label} {share:.1f} %" if share < 99.95 else f"{label} 100 %")
    return ", ".join(parts)


def targets_by_row(results):
    return {target["row"]: target for target in results["targets"]}


def markdown(results):
    targets = targets_by_row(results)
    settings = results["settings"]
    lines = []
    lines.append(f"## Benchmark {results['name']}")
    lines.append("")
    dirty = " with uncommitted changes in src/" if results.get("dirty") else ""
    lines.append(
        f"Commit `{results['commit']}`{dirty}, {results['date']}, {results['host']['cores']} cores, "
        f"load average (1/5/15 min) {fmt_load(results['host']['load_before'])} before the build, "
        f"{fmt_load(results['host'].get('load_at_measure'))} when the measurements began. "
        f"wrk {settings['wrk_threads']} threads, {settings['seconds']} s per scenario after a "
        f"{settings['warmup']} s warm-up; server workers: {settings['workers']}. "
        f"Tenant `{results['tenant']}` (the largest), list page = `GET {results['ceiling']['path']}` "
        f"({results['ceiling']['page_bytes']:,} bytes). Wall time of the run: {results['wall_seconds']:.0f} s "
        f"(build included). The ceiling, list from L1 and list from L2 run in {settings['rounds']} rounds "
        f"of {settings['round_seconds']} s each (every round runs all three back to back, starting one "
        f"later each round); their figures are the medians of the rounds, and their \"× ceiling\" is the "
        f"median of the per-round ratios. Hit logging on and off run in rounds the same way. Any other "
        f"row's \"× ceiling\" is its throughput over the mean of the two ceiling runs just before and after "
        f"its group of rows."
    )
    lines.append("")
    lines.append("| # | scenario | conns | req/s | × ceiling | p50 ms | p99 ms | errors | served as | target | result |")
    lines.append("|---|---|---:|---:|---:|---:|---:|---|---|---|---|")

    def row(number, label, scenario, target_text="", row_id=None, extra=""):
        target = targets.get(row_id or scenario.get("id"))
        lines.append(
            f"| {number} | {label} | {scenario['connections']} | {fmt_rps(scenario['rps'])} | "
            f"{fmt_ratio(scenario.get('ratio_to_ceiling'))} | {fmt_ms(scenario['p50_ms'])} | "
            f"{fmt_ms(scenario['p99_ms'])} | {errors_text(scenario['errors'])} | "
            f"{served_text(scenario.get('window'))}{extra} | {target_text} | {flag(target)} |"
        )

    ceiling = results["ceiling"]
    summary = ceiling["summary"]
    row(1, f"ceiling (`examples/ceiling.rs`; median of {len(ceiling['runs'])} runs: "
           f"{ceiling.get('list_rounds', 0)} list rounds and one after each later group, "
           f"{fmt_rps(summary['rps_min'])}–{fmt_rps(summary['rps_max'])})", summary)
    for scenario in results["scenarios"]:
        row(scenario["number"], scenario["label"], scenario, scenario.get("target_text", ""))
    logging = results["logging"]
    for key in ("on", "off"):
        scenario = logging[key]
        extra = ""
        if key == "on":
            extra = f"; {logging['hit_lines']:,} hit lines in its log, {logging['dropped_lines']:,} dropped"
        row(5, scenario["label"], scenario, scenario.get("target_text", ""), extra=extra)

    isolated = results.get("isolated")
    if isolated:
        row("1i", f"ceiling isolated: one worker on CPU 0, wrk -t1 on CPU 1 (median of "
                  f"{len(isolated['round_ratios'])} rounds)", isolated["ceiling"])
        row("2i", "list from L1 isolated: one worker on CPU 0, wrk -t1 on CPU 1 (median of rounds, "
                  "alternated with the ceiling)", dict(isolated["l1"], ratio_to_ceiling=isolated["ratio"]),
            "p99 ≤ 2 ms", row_id="list-l1")

    mixed = results["mixed"]
    for replica in mixed["replicas"]:
        row(6, replica["label"], replica, "")
    stale = mixed["stale_check"]
    lines.append(
        f"| 6 | mixed, both replicas: hit rate {100 * mixed['hit_rate']:.1f} %, "
        f"{fmt_rps(mixed['rps'])} req/s, p99 ≤ {fmt_ms(mixed['p99_ms'])} ms; checker: "
        f"{stale['writes']} probe writes, {stale['reads']} reads | {mixed['connections']} | "
        f"{fmt_rps(mixed['rps'])} | — | {fmt_ms(mixed['p50_ms'])} | {fmt_ms(mixed['p99_ms'])} | "
        f"{errors_text(mixed['errors'])} | {stale['stale']} stale (> {stale['window_ms']:.0f} ms), "
        f"{stale['ryw_violations']} read-your-writes violations, {stale['within_window']} within the window, "
        f"{stale['missing']} probe missing | zero stale answers | {flag(targets.get('mixed'))} |"
    )
    for key, what, target_text in (
            ("invalidation", "B reads the newest page", "p99 ≤ 5 ms"),
            ("invalidation_search", "B reads a `q` search page, as bench/cache.sh", "")):
        inv = results.get(key)
        if not inv:
            continue
        retried = inv.get("writes_needing_more_than_one_read")
        retried_text = f"; {retried} of {inv['writes']} writes needed more than one read of B" if retried is not None else ""
        lines.append(
            f"| 7 | cross-replica invalidation, {inv['writes']} writes (write's answer on A → B answers the new value; "
            f"{what}: `{inv.get('path', '')}`) | 1 | — | — | "
            f"{fmt_ms(inv['p50_ms'])} | {fmt_ms(inv['p99_ms'])} | 0 | max {fmt_ms(inv['max_ms'])} ms{retried_text} | "
            f"{target_text} | {flag(targets.get(key)) if target_text else ''} |"
        )
    mem = results["memory"]
    lines.append(
        f"| 8 | memory: flood of {mem['distinct_paths_hint']} ({mem['flood']['requests']:,} requests), CACHE_L1_MAX_MB={mem['l1_max_mb']} | "
        f"{mem['connections']} | {fmt_rps(mem['flood']['rps'])} | — | {fmt_ms(mem['flood']['p50_ms'])} | "
        f"{fmt_ms(mem['flood']['p99_ms'])} | {errors_text(mem['flood']['errors'])} | RSS {mem['rss_before'] / MIB:.1f} → "
        f"{mem['rss_after'] / MIB:.1f} MiB (peak {mem['rss_peak'] / MIB:.1f}), growth {mem['growth'] / MIB:.1f} MiB; "
        f"L1 {mem['l1_after']['bytes'] / MIB:.1f} MiB in {mem['l1_after']['entries']:,} entries | "
        f"growth ≤ {mem['l1_max_mb']} + 64 MiB | {flag(targets.get('memory'))} |"
    )
    lines.append("")
    per_round = []
    for scenario in results["scenarios"]:
        if scenario.get("round_ratios"):
            per_round.append(f"{scenario['short']} × ceiling " + ", ".join(f"{r:.2f}" for r in scenario["round_ratios"]))
    if isolated:
        per_round.append("list L1 isolated × ceiling isolated " + ", ".join(f"{r:.2f}" for r in isolated["round_ratios"]))
    if results["logging"].get("round_ratios"):
        per_round.append("hit logging on ÷ off " + ", ".join(f"{r:.3f}" for r in results["logging"]["round_ratios"]))
    if per_round:
        lines.append("Per round: " + "; ".join(per_round) + ".")
        lines.append("")
    routes = sorted(mixed.get("routes", {}).items(), key=lambda item: -item[1]["seconds"])[:8]
    if routes:
        lines.append("Mixed traffic (scenario 6), server-side time per route on both replicas, from `/metrics` "
                     "(most total time first):")
        lines.append("")
        lines.append("| route | requests | mean ms | share of server time |")
        lines.append("|---|---:|---:|---:|")
        total = sum(entry["seconds"] for _, entry in mixed["routes"].items()) or 1
        for route, entry in routes:
            lines.append(f"| `{route}` | {entry['requests']:,} | {fmt_ms(entry['mean_ms'])} | "
                         f"{100 * entry['seconds'] / total:.0f} % |")
        lines.append("")
    passed = sum(1 for target in results["targets"] if target["pass"])
    lines.append(f"Targets: {passed} of {len(results['targets'])} pass.")
    lines.append("")
    for target in results["targets"]:
        lines.append(f"- {'PASS' if target['pass'] else 'FAIL'}: {target['text']}")
    notes = results.get("notes") or []
    if notes:
        lines.append("")
        lines.append("Notes:")
        for note in notes:
            lines.append(f"- {note}")
    lines.append("")
    return "\n".join(lines)


def svg(results):
    rows = [("ceiling", results["ceiling"]["summary"])]
    rows += [(scenario["short"], scenario) for scenario in results["scenarios"]]
    rows += [(results["logging"][key]["short"], results["logging"][key]) for key in ("on", "off")]
    if results.get("isolated"):
        rows += [("ceiling isolated", dict(results["isolated"]["ceiling"], color="ceiling")),
                 ("list L1 isolated", dict(results["isolated"]["l1"], color="L1"))]
    rows += [(replica["short"], replica) for replica in results["mixed"]["replicas"]]
    ceiling_rps = results["ceiling"]["summary"]["rps"]

    row_height, top, left, panel, gap, right = 22, 70, 190, 360, 130, 90
    width = left + panel + gap + panel + right
    height = top + row_height * len(rows) + 60
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">'
        f'aishacrm benchmark {escape(results["name"])}</text>',
        f'<text x="{left + panel / 2}" y="50" text-anchor="middle" font-weight="bold">throughput (req/s, linear)</text>',
        f'<text x="{left + panel + gap + panel / 2}" y="50" text-anchor="middle" font-weight="bold">p99 latency (ms, log scale)</text>',
    ]
    top_rps = max((scenario["rps"] or 0) for _, scenario in rows) or 1
    magnitude = 10 ** math.floor(math.log10(top_rps / 4))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= top_rps / 4)
    ticks = math.ceil(top_rps / step)
    max_rps = step * ticks
    # p99 axis: decades from 0.1 ms to the next power of ten over the largest p99
    p99s = [scenario["p99_ms"] for _, scenario in rows if scenario["p99_ms"]]
    low, high = -1, max(1, math.ceil(math.log10(max(p99s)))) if p99s else 1
    p_left = left + panel + gap

    def p_x(ms):
        ms = max(ms, 10 ** low)
        return p_left + panel * (math.log10(ms) - low) / (high - low)

    bottom = top + row_height * len(rows)
    # grids
    for i in range(ticks + 1):
        x = left + panel * i / ticks
        value = step * i
        text = f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#555">{text}</text>')
    for decade in range(low, high + 1):
        x = p_x(10 ** decade)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#ddd"/>')
        label = f"{10 ** decade:g}"
        out.append(f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle" fill="#555">{label}</text>')
    # target lines: 0.8 and 0.4 x ceiling, p99 2 ms
    for share, label in ((0.8, "0.8× mean ceiling"), (0.4, "0.4× mean ceiling")):
        x = left + panel * share * ceiling_rps / max_rps
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#c00" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{x:.1f}" y="{bottom + 32}" text-anchor="middle" fill="#c00" font-size="10">{label}</text>')
    x = p_x(2)
    out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{bottom}" stroke="#c00" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x:.1f}" y="{bottom + 32}" text-anchor="middle" fill="#c00" font-size="10">2 ms (list L1 target)</text>')

    colors = {"ceiling": "#555", "L1": "#2b7bb9", "L2": "#7fb3d5", "off": "#e08a3c", "mixed": "#6a9f58"}
    for index, (label, scenario) in enumerate(rows):
        y = top + row_height * index
        color = colors.get(scenario.get("color", "ceiling"), "#888")
        out.append(f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{escape(label)} '
                   f'<tspan fill="#888" font-size="10">c{scenario["connections"]}</tspan></text>')
        rps = scenario["rps"] or 0
        w = panel * rps / max_rps
        out.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_height - 6}" fill="{color}"/>')
        out.append(f'<text x="{left + max(w, 1) + 4:.1f}" y="{y + 15}" fill="#222">{fmt_rps(rps)}</text>')
        if scenario["p99_ms"]:
            w = p_x(scenario["p99_ms"]) - p_left
            out.append(f'<rect x="{p_left}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_height - 6}" fill="{color}"/>')
            out.append(f'<text x="{p_left + max(w, 1) + 4:.1f}" y="{y + 15}" fill="#222">{fmt_ms(scenario["p99_ms"])}</text>')
    legend_y = height - 12
    x = left
    for key, text in (("ceiling", "ceiling"), ("L1", "L1 hit"), ("L2", "L2 hit (L1 off)"), ("off", "cache off"), ("mixed", "mixed, 2 replicas")):
        out.append(f'<rect x="{x}" y="{legend_y - 10}" width="12" height="12" fill="{colors[key]}"/>')
        out.append(f'<text x="{x + 16}" y="{legend_y}">{text}</text>')
        x += 28 + 7 * len(text)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render(json_path):
    with open(json_path) as source:
        results = json.load(source)
    base = os.path.splitext(json_path)[0]
    with open(base + ".md", "w") as out:
        out.write(markdown(results))
    with open(base + ".svg", "w") as out:
        out.write(svg(results))
    return base + ".md", base + ".svg"


if __name__ == "__main__":
    for path in sys.argv[1:]:
        for written in render(path):
            print(written)
