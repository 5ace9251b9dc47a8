#!/usr/bin/env python3
"""score: judge a `setpoint run --once --output json` report against fleetgen's ground truth.

    python3 score.py --truth truth.json --report report.json [--loop NAME] [--output json]

Prints per-class precision and recall, macro-F1, the unsafe shrinks (a proposed scale-down that
leaves a dimension it shrinks below its projected peaks, or shrinks one whose telemetry has a
gap, or is followed by saturation within the horizon), and how many of the targets
that saturate within 4 weeks after the end were classed scale_up (all of them, and those at
least 2 weeks ahead). Standard library only.
"""

import argparse
import json
import re
import sys

CLASSES = ["scale_down", "remain", "scale_up"]
HORIZON = 4
CHANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*vCPU\s*/\s*(\d+(?:\.\d+)?)\s*GiB\s*→\s*(\d+(?:\.\d+)?)\s*vCPU\s*/\s*"
                       r"(\d+(?:\.\d+)?)\s*GiB")


def load_rows(report, loop):
    doc = json.load(open(report))
    loops = doc if isinstance(doc, list) else [doc]
    rows = {}
    meta = []
    for lp in loops:
        if loop and lp.get("loop_name") != loop:
            continue
        meta.append({k: lp.get(k) for k in ("loop_name", "cycle", "now", "source", "plugin", "queries",
                                             "degraded", "duration_seconds")})
        for r in lp.get("rows", []):
            rows[r["target"]] = r
    return rows, meta


def shrink_of(row):
    """(is a scale-down proposal, from, to) from the row's proposed change."""
    change = row.get("change")
    if not change:
        return False, None, None
    m = CHANGE_RE.search(change)
    if not m:
        return row.get("class") == "scale_down", None, None
    c0, m0, c1, m1 = (float(x) for x in m.groups())
    return (c1 < c0 or m1 < m0), (c0, m0), (c1, m1)


def shrunk(t, before, after, why):
    """(index, name) of each of CPU and memory that the change shrinks and whose peaks are
    known; one shrunk while an exporter gap hides its peaks is added to `why` instead."""
    for i, name in enumerate(("cpu", "memory")):
        if after[i] >= before[i]:
            continue
        if t["data_gap"]:
            why.append(f"{name} shrinks while an exporter gap hides its peaks")
            continue
        yield i, name


def unsafe_reasons(t, before, after, limit=0.85):
    """Why a scale-down from `before` to `after` (vCPU, GiB) is unsafe for target `t`: a
    dimension it shrinks would hold a projected peak at or above `limit` of its new size, or
    shrinks while the exporter gap hides its peaks; or any saturation follows within the
    horizon. With sizes unknown (a node-count change), the halving rule of the truth applies."""
    why = []
    if before is None or after is None:
        if t["halving_unsafe"]:
            why.extend(t["halving_unsafe_reasons"])
    else:
        for i, name in shrunk(t, before, after, why):
            for stat in ("projected_p99", "projected_max_1h_mean"):
                share = t["observed"][name][stat] * before[i] / after[i]
                if share >= limit:
                    why.append(f"{name} {stat.replace('projected_', '')} "
                               f"{t['observed'][name][stat]:.2f} -> {share:.2f} of the new size "
                               f"(limit {limit:.2f})")
    fs = t.get("first_saturation_week")
    if fs is not None and fs <= HORIZON:
        why.append("saturated now" if fs == 0 else f"saturation follows in week +{fs}")
    return why


def below_seen_need(t, before, after):
    """The safety rule with no margin and no forecast: a scale-down may not leave a dimension
    it shrinks smaller than the peak (p99 or busiest hour) it was seen to need over the window,
    nor shrink one whose exporter gap hides its peaks."""
    if before is None or after is None:
        return []
    why = []
    for i, name in shrunk(t, before, after, why):
        peak = max(t["observed"][name]["p99"], t["observed"][name]["max_1h_mean"])
        if peak * before[i] / after[i] >= 1.0:
            why.append(f"{name} peak {peak:.2f} -> {peak * before[i] / after[i]:.2f} of the new size")
    return why


def class_metrics(confusion):
    """Per-class precision/recall/F1, macro-F1 and accuracy from a confusion matrix."""
    per_class = {}
    for c in CLASSES:
        tp = confusion[c][c]
        pred_c = sum(confusion[a][c] for a in CLASSES)
        true_c = sum(confusion[c].values())
        p = tp / pred_c if pred_c else 0.0
        r = tp / true_c if true_c else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        per_class[c] = {"support": true_c, "predicted": pred_c, "precision": p, "recall": r, "f1": f1}
    macro_f1 = sum(per_class[c]["f1"] for c in CLASSES) / len(CLASSES)
    n = sum(sum(v.values()) for v in confusion.values())
    accuracy = sum(confusion[c][c] for c in CLASSES) / n if n else 0.0
    return per_class, macro_f1, accuracy


def score(truth_doc, rows):
    truths = {t["id"]: t for t in truth_doc["targets"]}
    confusion = {a: {b: 0 for b in CLASSES + ["missing"]} for a in CLASSES}
    per_behaviour = {}
    shrinks = []
    unsafe = []
    below_need = []
    missing = []
    insufficient = []
    for tid, t in sorted(truths.items()):
        row = rows.get(tid)
        true = t["truth_class"]
        if row is None or row.get("class") not in CLASSES:
            pred = "missing"
            missing.append({"target": tid, "error": (row or {}).get("error")})
        else:
            pred = row["class"]
        confusion[true][pred] += 1
        b = per_behaviour.setdefault(t["behaviour"], {"n": 0, "truth": {}, "setpoint": {}})
        b["n"] += 1
        b["truth"][true] = b["truth"].get(true, 0) + 1
        b["setpoint"][pred] = b["setpoint"].get(pred, 0) + 1
        if row is not None and row.get("class_reason") == "insufficient_data":
            insufficient.append(tid)
        if row is None:
            continue
        is_shrink, before, after = shrink_of(row)
        if not is_shrink:
            continue
        item = {"target": tid, "behaviour": t["behaviour"], "truth_class": true,
                "verdict": row.get("verdict"), "confidence": row.get("confidence"),
                "change": row.get("change")}
        shrinks.append(item)
        why = unsafe_reasons(t, before, after)
        if why:
            unsafe.append(dict(item, why=why))
        below = below_seen_need(t, before, after)
        if below:
            below_need.append(dict(item, why=below))

    per_class, macro_f1, accuracy = class_metrics(confusion)
    n = len(truths)
    gap_ids = {tid for tid, t in truths.items() if t["data_gap"]}
    confusion_nogap = {a: {b: 0 for b in CLASSES + ["missing"]} for a in CLASSES}
    for tid, t in truths.items():
        if tid in gap_ids:
            continue
        row = rows.get(tid)
        pred = row["class"] if row is not None and row.get("class") in CLASSES else "missing"
        confusion_nogap[t["truth_class"]][pred] += 1
    _, macro_f1_nogap, _ = class_metrics(confusion_nogap)

    def flagged(lo, hi):
        ids = [tid for tid, t in truths.items()
               if t.get("first_saturation_week") is not None and lo <= t["first_saturation_week"] <= hi]
        hit = [tid for tid in ids if rows.get(tid, {}).get("class") == "scale_up"]
        return {"targets": len(ids), "classed_scale_up": len(hit),
                "share": (len(hit) / len(ids)) if ids else None,
                "missed": sorted(set(ids) - set(hit))}

    actionable = [u for u in unsafe if u["verdict"] in ("act", "review")]
    return {
        "targets": n,
        "rows": len(rows),
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "macro_f1_without_gap_targets": macro_f1_nogap,
        "per_class": per_class,
        "confusion": confusion,
        "scale_down_proposals": len(shrinks),
        "unsafe_shrinks": len(unsafe),
        "unsafe_shrinks_not_held": len(actionable),
        "unsafe_shrink_list": unsafe,
        "below_seen_need": len(below_need),
        "below_seen_need_list": below_need,
        "saturations_within_4w_flagged": flagged(1, HORIZON),
        "saturations_flagged_2w_ahead": flagged(2, HORIZON),
        "saturated_now_flagged": flagged(0, 0),
        "insufficient_data": len(insufficient),
        "gap_targets": sum(1 for t in truths.values() if t["data_gap"]),
        "missing_or_failed": missing,
        "per_behaviour": per_behaviour,
    }


def pct(x):
    return "  n/a" if x is None else f"{100 * x:5.1f} %"


def print_text(s, meta, out=sys.stdout):
    w = out.write
    for m in meta:
        w(f"report: loop {m['loop_name']} · cycle {m['cycle']} · {m['now']} · {m['source']} · "
          f"{m['plugin']} · {m['queries']} queries · degraded {len(m['degraded'] or [])}\n")
    w(f"targets {s['targets']} (rows in report {s['rows']}); accuracy {pct(s['accuracy'])}; "
      f"macro-F1 {s['macro_f1']:.3f} "
      f"({s['macro_f1_without_gap_targets']:.3f} without the {s['gap_targets']} targets with an exporter gap)\n\n")
    w(f"{'class':<11} {'support':>7} {'predicted':>9} {'precision':>9} {'recall':>7} {'F1':>6}\n")
    for c in CLASSES:
        p = s["per_class"][c]
        w(f"{c:<11} {p['support']:>7} {p['predicted']:>9} {p['precision']:>9.3f} {p['recall']:>7.3f} "
          f"{p['f1']:>6.3f}\n")
    w("\nconfusion (rows: truth, columns: setpoint)\n")
    cols = CLASSES + ["missing"]
    w(f"{'':<11}" + "".join(f"{c:>11}" for c in cols) + "\n")
    for c in CLASSES:
        w(f"{c:<11}" + "".join(f"{s['confusion'][c][k]:>11}" for k in cols) + "\n")
    w("\nper behaviour (truth → setpoint)\n")
    for b, v in sorted(s["per_behaviour"].items()):
        tr = ", ".join(f"{k} {n}" for k, n in sorted(v["truth"].items()))
        sp = ", ".join(f"{k} {n}" for k, n in sorted(v["setpoint"].items()))
        w(f"  {b:<20} n={v['n']:<3} truth: {tr:<34} setpoint: {sp}\n")
    f = s["saturations_within_4w_flagged"]
    f2 = s["saturations_flagged_2w_ahead"]
    f0 = s["saturated_now_flagged"]
    w(f"\nsaturating in weeks +1..+{HORIZON}: {f['classed_scale_up']} of {f['targets']} classed scale_up "
      f"({pct(f['share'])})\n")
    w(f"saturations flagged >= 2 weeks ahead (weeks +2..+{HORIZON}): {f2['classed_scale_up']} of "
      f"{f2['targets']} ({pct(f2['share'])})\n")
    w(f"saturated now: {f0['classed_scale_up']} of {f0['targets']} classed scale_up ({pct(f0['share'])})\n")
    w(f"\nbelow what the target was seen to need (no margin, no forecast): {s['below_seen_need']}\n")
    for u in s["below_seen_need_list"]:
        w(f"  {u['target']:<10} {u['change']}: {'; '.join(u['why'])}\n")
    w(f"\nscale-down proposals: {s['scale_down_proposals']}; unsafe shrinks: {s['unsafe_shrinks']} "
      f"({s['unsafe_shrinks_not_held']} of them not held by the policy: verdict review/act)\n")
    for u in s["unsafe_shrink_list"]:
        w(f"  {u['target']:<10} {u['behaviour']:<20} truth {u['truth_class']:<10} verdict {u['verdict']:<6} "
          f"{u['change']}\n      why unsafe: {'; '.join(u['why'])}\n")
    w(f"\nremain (insufficient_data): {s['insufficient_data']}; targets with an exporter gap: {s['gap_targets']}\n")
    if s["missing_or_failed"]:
        w(f"missing or failed rows: {len(s['missing_or_failed'])}: "
          + ", ".join(m["target"] for m in s["missing_or_failed"][:20]) + "\n")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--truth", required=True, help="fleetgen ground-truth JSON")
    ap.add_argument("--report", required=True, help="setpoint run --once --output json")
    ap.add_argument("--loop", help="only this loop of the report")
    ap.add_argument("--output", choices=["text", "json"], default="text")
    ap.add_argument("--json", help="also write the score as JSON to this file")
    args = ap.parse_args(argv)
    truth = json.load(open(args.truth))
    rows, meta = load_rows(args.report, args.loop)
    s = score(truth, rows)
    s["report"] = meta
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)
    if args.output == "json":
        json.dump(s, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print_text(s, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
