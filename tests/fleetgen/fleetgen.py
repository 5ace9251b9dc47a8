#!/usr/bin/env python3
"""fleetgen: an independent synthetic PostgreSQL fleet, as node_exporter and postgres_exporter
would have scraped it, with a ground truth of what each target needs.

Standard library only. Writes

  * the raw exporter series, in the Prometheus text format with millisecond timestamps (for
    VictoriaMetrics' /api/v1/import/prometheus, ``--format prometheus``) or in OpenMetrics with
    second timestamps ending in ``# EOF`` (for ``promtool tsdb create-blocks-from openmetrics``,
    ``--format openmetrics``); each series is written whole, its samples in time order;
  * ``--truth FILE``: per target its size, behaviour, faults, observed statistics, what happens
    in the weeks after the end, whether halving it would be unsafe, and its true class;
  * ``--inventory FILE``: the fleet's inventory, a ``targets:`` list that a loop reads with
    ``inventory: FILE``.

Every figure here is this generator's own: sizes, behaviours, noise and the truth rules are
documented in README.md next to this file.
"""

import argparse
import datetime as dt
import itertools
import json
import math
import os
import random
import sys
import time

BEHAVIOURS = [
    "idle",                 # oversized: room to halve
    "steady",               # flat, mid-range
    "spiky",                # mid means, an hour or two near saturation every day
    "growth",               # compound growth of 5-10 %/week heading to saturation
    "memory_creep",         # memory from ~60 % towards ~90 % and beyond
    "cpu_saturated",        # CPU pinned near 100 %
    "connection_pressure",  # active connections >= 95 % of max_connections at the daily peak
    "weekly_seasonal",      # busy weekdays, quiet weekends
]

# Truth rules (README.md, "Ground truth").
CPU_SATURATION_P90 = 0.90        # a week whose p90 of 5-min CPU reaches this is saturated
IOPS_SATURATION_P90 = 0.90       # same for the disk (reads + writes / provisioned IOPS)
MEMORY_FULL_MAX_1H = 0.95        # a week whose busiest hour of memory reaches this: memory full
CONNECTIONS_FULL_MAX = 0.95      # a week whose busiest 5 min of backends reaches this share
HALVING_LIMIT = 0.85             # halved size must keep peaks below this
HALVING_PROJECTION_WEEKS = 4     # peaks are projected this far by their weekly trend
SCALE_UP_HORIZON_WEEKS = 4       # saturating within this many weeks after the end: scale_up
LOW_CPU_MEAN = 0.30              # "utilisation is low" for a scale_down truth (whole window)
LOW_MEMORY_MEAN = 0.45

WEEK = 7 * 86400


# --------------------------------------------------------------------------- time grid

def parse_time(text):
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = dt.datetime.fromisoformat(text)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp())


def default_end(now=None):
    """The most recent Monday 06:00 UTC at or before now (the weekly loop's default schedule)."""
    now = int(time.time()) if now is None else now
    day = now - now % 86400
    weekday = (day // 86400 + 3) % 7           # 1970-01-01 was a Thursday; Monday = 0
    monday = day - weekday * 86400 + 6 * 3600
    if monday > now:
        monday -= WEEK
    return monday


def rfc3339(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Grid:
    """The shared sample grid: n_obs observed steps ending one step before `end`, then
    n_future steps after it (never written, used for the truth)."""

    def __init__(self, end, weeks, step, future_weeks):
        self.end = end
        self.step = step
        self.weeks = weeks
        self.start = end - weeks * WEEK
        self.n_obs = weeks * WEEK // step
        self.n_future = future_weeks * WEEK // step
        self.n = self.n_obs + self.n_future
        self.ts = [self.start + i * step for i in range(self.n)]
        self.hour = [(t % 86400) / 3600.0 for t in self.ts]
        self.weekend = [((t // 86400 + 3) % 7) >= 5 for t in self.ts]
        self.week = [(t - self.start) / WEEK for t in self.ts]       # fractional week since start
        self.per_week = WEEK // step
        self.elapsed = [step * (i + 1) for i in range(self.n_obs)]
        self.per_hour = max(1, 3600 // step)
        self._diurnal = {}
        self._spike = {}

    def diurnal(self, peak_hour):
        """0..1, 1 at peak_hour, flat at night: ((1 + cos)/2)^2 of the distance to the peak."""
        key = round(peak_hour * 4) / 4
        if key not in self._diurnal:
            w = 2 * math.pi / 24
            self._diurnal[key] = [(0.5 + 0.5 * math.cos(w * (h - key))) ** 2 for h in self.hour]
        return self._diurnal[key]

    def spike(self, start_hour, hours):
        """True during [start_hour, start_hour + hours) every day (UTC)."""
        key = (round(start_hour * 4) / 4, round(hours * 4) / 4)
        if key not in self._spike:
            s, d = key
            self._spike[key] = [((h - s) % 24.0) < d for h in self.hour]
        return self._spike[key]


class Noise:
    """A table of AR(1) noise (unit variance, lag-1 correlation 0.85); each signal reads it
    from its own offset."""

    def __init__(self, rng, size=1 << 17):
        phi = 0.85
        k = math.sqrt(1 - phi * phi)
        x = 0.0
        table = []
        g = rng.gauss
        for _ in range(size + 64):
            x = phi * x + k * g(0.0, 1.0)
            table.append(x)
        self.table = table[64:]
        self.size = size

    def take(self, rng, n):
        off = rng.randrange(self.size)
        out = self.table[off:off + n]
        while len(out) < n:
            out += self.table[:n - len(out)]
        return out


# --------------------------------------------------------------------------- sizes

VCPU_CHOICES = [(2, 0.40), (4, 0.35), (8, 0.17), (16, 0.08)]
GIB_PER_VCPU = [(4, 0.6), (8, 0.4)]                      # general purpose / memory optimised
MAX_CONNECTIONS = [(100, 0.3), (200, 0.35), (300, 0.2), (500, 0.15)]
SHARED_BUFFERS_SHARE = [(0.25, 0.6), (0.20, 0.2), (0.30, 0.2)]
IOPS_PER_VCPU = [(500, 0.3), (1000, 0.5), (2000, 0.2)]   # provisioned IOPS, floor 3000
DISKS = ["nvme1n1", "vdb", "sdb"]


def pick(rng, choices):
    r = rng.random() * sum(w for _, w in choices)
    for value, w in choices:
        r -= w
        if r <= 0:
            return value
    return choices[-1][0]


def size_text(mib):
    return f"{mib // 1024}GB" if mib % 1024 == 0 else f"{mib}MB"


def draw_size(rng):
    vcpu = pick(rng, VCPU_CHOICES)
    mem = vcpu * pick(rng, GIB_PER_VCPU)
    sb_mib = int(mem * 1024 * pick(rng, SHARED_BUFFERS_SHARE))
    sb_mib -= sb_mib % 128
    return {
        "vcpu": vcpu,
        "memory_gib": mem,
        "provisioned_iops": max(3000, vcpu * pick(rng, IOPS_PER_VCPU)),
        "max_connections": pick(rng, MAX_CONNECTIONS),
        "shared_buffers": size_text(sb_mib),
        "effective_cache_size": size_text(int(mem * 1024 * 0.75)),
    }


# --------------------------------------------------------------------------- behaviours

def u(rng, a, b):
    return rng.uniform(a, b)


def plan_behaviour(rng, behaviour, grid):
    """Per-dimension parameters. Each dimension: level (at the window's start), amp (relative
    diurnal swing, peaking at peak_h), sd (noise), weekend (factor on weekends), and optionally
    rate (compound growth per week, as ln), slope (additive per week), spike (daily window at
    a peak level)."""
    weeks = grid.weeks
    peak_h = u(rng, 11, 17)
    p = {
        "cpu": {"level": u(rng, 0.25, 0.45), "amp": u(rng, 0.2, 0.5), "sd": u(rng, 0.015, 0.035),
                "weekend": u(rng, 0.8, 1.0)},
        "memory": {"level": u(rng, 0.35, 0.60), "amp": u(rng, 0.01, 0.04), "sd": u(rng, 0.003, 0.008),
                   "weekend": 1.0, "additive": True},
        "connections": {"level": u(rng, 0.10, 0.35), "amp": u(rng, 0.3, 0.7), "sd": u(rng, 0.01, 0.03),
                        "weekend": u(rng, 0.7, 1.0)},
        "iops": {"level": u(rng, 0.08, 0.35), "amp": u(rng, 0.2, 0.6), "sd": u(rng, 0.01, 0.03),
                 "weekend": u(rng, 0.8, 1.0)},
        "idle_connections": u(rng, 0.04, 0.15),
        "peak_h": peak_h,
    }
    c, m, n, io = p["cpu"], p["memory"], p["connections"], p["iops"]
    if behaviour == "idle":
        c.update(level=u(rng, 0.03, 0.14), amp=u(rng, 0.3, 0.9), sd=u(rng, 0.005, 0.015))
        m.update(level=u(rng, 0.14, 0.32))
        n.update(level=u(rng, 0.02, 0.10))
        io.update(level=u(rng, 0.02, 0.10))
    elif behaviour == "steady":
        c.update(level=u(rng, 0.36, 0.60), amp=u(rng, 0.05, 0.25))
        m.update(level=u(rng, 0.45, 0.72))
        n.update(level=u(rng, 0.15, 0.40))
    elif behaviour == "spiky":
        c.update(level=u(rng, 0.18, 0.40), amp=u(rng, 0.1, 0.3),
                 spike={"start_h": float(rng.randrange(0, 24)), "hours": rng.choice([1.0, 1.5, 2.0]),
                        "peak": u(rng, 0.90, 0.98)})
        m.update(level=u(rng, 0.30, 0.58))
        io.update(spike={"start_h": c["spike"]["start_h"], "hours": c["spike"]["hours"],
                         "peak": u(rng, 0.55, 0.85)})
    elif behaviour == "growth":
        g = u(rng, 0.05, 0.10)                      # compound growth per week
        k = rng.randint(-1, 8)                      # CPU p90 crosses 0.9 around week +k
        amp = u(rng, 0.15, 0.35)
        end_p90 = CPU_SATURATION_P90 / (1 + g) ** k
        end_level = end_p90 / (1 + amp * 0.85)
        c.update(level=end_level / (1 + g) ** weeks, amp=amp, rate=math.log1p(g))
        io.update(level=u(rng, 0.10, 0.30) / (1 + g) ** (weeks * 0.9), rate=math.log1p(g) * 0.9)
        n.update(level=u(rng, 0.10, 0.25) / (1 + g) ** (weeks * 0.5), rate=math.log1p(g) * 0.5)
        m.update(level=u(rng, 0.35, 0.50), slope=u(rng, 0.002, 0.008))
        p["growth_per_week"] = g
    elif behaviour == "memory_creep":
        start = u(rng, 0.55, 0.65)
        end = u(rng, 0.78, 0.91)
        m.update(level=start, slope=(end - start) / weeks, amp=u(rng, 0.005, 0.02))
        c.update(level=u(rng, 0.20, 0.45))
    elif behaviour == "cpu_saturated":
        c.update(level=u(rng, 0.88, 0.96), amp=u(rng, 0.02, 0.06), sd=u(rng, 0.01, 0.02), weekend=1.0)
        m.update(level=u(rng, 0.45, 0.75))
        n.update(level=u(rng, 0.30, 0.55), amp=u(rng, 0.1, 0.3))
        io.update(level=u(rng, 0.30, 0.55))
    elif behaviour == "connection_pressure":
        peak = u(rng, 0.96, 1.05)                    # the daily peak, as a share of max_connections
        amp = u(rng, 0.25, 0.6)
        n.update(level=peak / (1 + amp), amp=amp, sd=u(rng, 0.01, 0.02), weekend=u(rng, 0.9, 1.0))
        c.update(level=u(rng, 0.30, 0.55))
        m.update(level=u(rng, 0.50, 0.75))
        p["idle_connections"] = u(rng, 0.01, 0.04)
    elif behaviour == "weekly_seasonal":
        if rng.random() < 0.4:
            # an office-hours database that is small even on weekdays
            p["variant"] = "quiet"
            c.update(level=u(rng, 0.06, 0.16), amp=u(rng, 0.5, 1.0), weekend=u(rng, 0.15, 0.40))
            m.update(level=u(rng, 0.16, 0.32), amp=u(rng, 0.02, 0.05))
        else:
            p["variant"] = "busy"
            c.update(level=u(rng, 0.15, 0.45), amp=u(rng, 0.5, 1.0), weekend=u(rng, 0.15, 0.40))
            m.update(level=u(rng, 0.30, 0.60), amp=u(rng, 0.02, 0.06))
        n.update(level=u(rng, 0.10, 0.35), weekend=u(rng, 0.2, 0.5))
        io.update(level=u(rng, 0.10, 0.40), weekend=u(rng, 0.2, 0.5))
    else:
        raise ValueError(behaviour)
    return p


def build_signal(grid, rng, noise, spec, peak_h):
    """One utilisation ratio per grid step (observed and future), clipped to [0, 1]."""
    n = grid.n
    z = noise.take(rng, n)
    d = grid.diurnal(peak_h)
    amp, sd, wf = spec["amp"], spec["sd"], spec.get("weekend", 1.0)
    lvl = spec["level"]
    if "rate" in spec:
        r = spec["rate"]
        exp = math.exp
        base = [lvl * exp(r * w) for w in grid.week]
    elif "slope" in spec:
        s = spec["slope"]
        base = [lvl + s * w for w in grid.week]
    else:
        base = None
    if spec.get("additive"):
        # memory: level plus a small absolute swing
        if base is None:
            x = [(0.0 if (v := lvl + amp * di + sd * zi) < 0.0 else 1.0 if v > 1.0 else v)
                 for di, zi in zip(d, z)]
        else:
            x = [(0.0 if (v := b + amp * di + sd * zi) < 0.0 else 1.0 if v > 1.0 else v)
                 for b, di, zi in zip(base, d, z)]
    elif base is None and wf == 1.0:
        x = [(0.0 if (v := lvl * (1.0 + amp * di) + sd * zi) < 0.0 else 1.0 if v > 1.0 else v)
             for di, zi in zip(d, z)]
    elif base is None:
        x = [(0.0 if (v := lvl * (1.0 + amp * di) * (wf if we else 1.0) + sd * zi) < 0.0
              else 1.0 if v > 1.0 else v) for di, we, zi in zip(d, grid.weekend, z)]
    else:
        x = [(0.0 if (v := b * (1.0 + amp * di) * (wf if we else 1.0) + sd * zi) < 0.0
              else 1.0 if v > 1.0 else v) for b, di, we, zi in zip(base, d, grid.weekend, z)]
    sp = spec.get("spike")
    if sp:
        # every day, the spike window at the peak level with a little noise
        mask = grid.spike(sp["start_h"], sp["hours"])
        pk = sp["peak"]
        x = [(1.0 if (v := pk + 0.012 * zi) > 1.0 else v) if s else xi for xi, s, zi in zip(x, mask, z)]
    return x


# --------------------------------------------------------------------------- statistics

def quantile(sorted_values, q):
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def max_window_mean(values, k):
    if len(values) < k:
        return max(values) if values else None
    p = list(itertools.accumulate(values, initial=0.0))
    return max(map(float.__sub__, p[k:], p[:-k])) / k


def slope_per_week(weekly):
    n = len(weekly)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    my = sum(weekly) / n
    num = sum((i - mx) * (y - my) for i, y in enumerate(weekly))
    den = sum((i - mx) ** 2 for i in range(n))
    return num / den


def r4(x):
    return None if x is None else round(x, 4)


def week_stats(grid, series, lo, hi, need):
    """Per week [lo, hi) of grid weeks, the statistics named in `need` of: mean, p90, max_1h
    (the busiest 1-hour mean), max."""
    out = []
    pw, ph = grid.per_week, grid.per_hour
    for w in range(lo, hi):
        chunk = series[w * pw:(w + 1) * pw]
        st = {}
        if "mean" in need:
            st["mean"] = sum(chunk) / len(chunk)
        if "p90" in need:
            st["p90"] = quantile(sorted(chunk), 0.90)
        if "max_1h" in need:
            st["max_1h"] = max_window_mean(chunk, ph)
        if "max" in need:
            st["max"] = max(chunk)
        out.append(st)
    return out


# --------------------------------------------------------------------------- faults

def plan_faults(rng, grid, args):
    """Data faults, independent of the behaviour."""
    faults = []
    n = grid.n_obs
    per_day = 86400 // grid.step
    if rng.random() < args.gap_share:
        days = rng.choice([2, 2.5, 3, 4, 5, 6])
        length = int(days * per_day)
        last2w = n - 2 * grid.per_week
        start = rng.randrange(last2w, n - length + 1) if n - length + 1 > last2w else last2w
        exporter = pick(rng, [("both", 0.5), ("node", 0.25), ("postgres", 0.25)])
        faults.append({"kind": "gap", "exporter": exporter, "start_index": start, "end_index": start + length,
                       "days": days})
    if rng.random() < args.reset_share:
        for _ in range(rng.choice([1, 1, 2])):
            at = rng.randrange(per_day, n - per_day)
            faults.append({"kind": "counter_reset", "index": at, "missing_scrapes": rng.randint(1, 3)})
    if rng.random() < args.nan_share:
        k = rng.randint(3, 20)
        faults.append({"kind": "nan", "series": rng.choice(["node_memory_MemAvailable_bytes",
                                                            "pg_stat_activity_count"]),
                       "indices": sorted(rng.sample(range(n), k))})
    if rng.random() < args.nan_share:
        k = rng.randint(3, 30)
        faults.append({"kind": "absent", "exporter": rng.choice(["node", "postgres"]),
                       "indices": sorted(rng.sample(range(n), k))})
    return faults


def absent_masks(grid, faults):
    """keep[exporter]: None (every sample) or a list of booleans over the observed steps."""
    n = grid.n_obs
    keep = {"node": None, "postgres": None}

    def drop(exporter, indices):
        if keep[exporter] is None:
            keep[exporter] = [True] * n
        k = keep[exporter]
        for i in indices:
            if 0 <= i < n:
                k[i] = False

    for f in faults:
        if f["kind"] == "gap":
            rng_ = range(f["start_index"], f["end_index"])
            for e in (["node", "postgres"] if f["exporter"] == "both" else [f["exporter"]]):
                drop(e, rng_)
        elif f["kind"] == "counter_reset":
            drop("node", range(f["index"], f["index"] + f["missing_scrapes"]))
        elif f["kind"] == "absent":
            drop(f["exporter"], f["indices"])
    return keep


# --------------------------------------------------------------------------- one target

class Writer:
    """Writes whole series as bytes: each distinct value array is formatted once (with its
    timestamps) and shared by every series carrying it (e.g. the CPUs of a target)."""

    def __init__(self, fh, fmt, grid):
        self.fh = fh
        unit = 1000 if fmt == "prometheus" else 1
        self.ts = [b" %d\n" % (t * unit) for t in grid.ts[:grid.n_obs]]
        self._const = {}
        self.samples = 0
        self.series = 0
        self.bytes = 0

    def values(self, fmt, values):
        """Value strings joined with their timestamps (the observed steps)."""
        return list(map(bytes.__add__, map(fmt.__mod__, values), self.ts))

    def const(self, text):
        if text not in self._const:
            self._const[text] = [text + t for t in self.ts]
        return self._const[text]

    def nan(self, items, indices):
        for i in indices:
            items[i] = b"NaN" + self.ts[i]

    def series_out(self, name, labels, items, keep=None):
        if keep is not None:
            items = list(itertools.compress(items, keep))
        if not items:
            return
        prefix = (name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "} ").encode()
        body = prefix.join(items)
        self.fh.write(prefix)
        self.fh.write(body)
        self.samples += len(items)
        self.series += 1
        self.bytes += len(prefix) + len(body)


def with_resets(values, resets):
    """A counter restarted from zero at each reset index (a reboot of the exporter's host)."""
    if not resets:
        return values
    out = values[:resets[0]]
    bounds = sorted(resets) + [len(values)]
    for r, nxt in zip(bounds, bounds[1:]):
        base = values[r - 1]
        out += [v - base for v in values[r:nxt]]
    return out


def make_target(index, behaviour, args, grid):
    rng = random.Random(f"fleetgen:{args.seed}:{index}")
    tid = f"{args.prefix}-{index + 1:04d}"
    size = draw_size(rng)
    plan = plan_behaviour(rng, behaviour, grid)
    faults = plan_faults(rng, grid, args)
    has_io_time = rng.random() < args.io_time_share
    return {"id": tid, "behaviour": behaviour, "size": size, "plan": plan, "faults": faults,
            "has_io_time": has_io_time, "disk": rng.choice(DISKS), "rng": rng,
            "app_db": rng.choice(["app", "orders", "billing", "inventory", "events", "users", "ledger"])}


def generate_target(t, args, grid, noise, writer):
    rng = t["rng"]
    plan, size = t["plan"], t["size"]
    n_obs, step = grid.n_obs, args.step
    peak_h = plan["peak_h"]
    cpu = build_signal(grid, rng, noise, plan["cpu"], peak_h)
    mem = build_signal(grid, rng, noise, plan["memory"], peak_h)
    act = build_signal(grid, rng, noise, plan["connections"], peak_h)
    iops = build_signal(grid, rng, noise, plan["iops"], peak_h)

    vcpu = size["vcpu"]
    maxc = size["max_connections"]
    keep = absent_masks(grid, t["faults"])
    resets = sorted(f["index"] for f in t["faults"] if f["kind"] == "counter_reset")
    nan_faults = [f for f in t["faults"] if f["kind"] == "nan"]

    # Per-CPU counters: every CPU of the target carries the target's utilisation (one formatted
    # array per mode, shared by the CPUs: formatting is what costs). Counters come from the
    # cumulative utilisation: idle(i) = start + step * (i + 1) - step * sum(util[0..i]).
    cum = list(itertools.accumulate(cpu[:n_obs]))
    inst = t["id"]
    node = [("instance", inst), ("job", args.node_job)]
    kn = keep["node"]
    user_share = rng.uniform(0.65, 0.8)
    start = rng.uniform(1e5, 5e6)
    for mode in args.cpu_modes:
        if mode == "idle":
            vals = [start + e - step * c for e, c in zip(grid.elapsed, cum)]
        else:
            f = step * (user_share if mode == "user" else 1.0 - user_share)
            s0 = start * (0.3 if mode == "user" else 0.06)
            vals = [s0 + f * c for c in cum]
        items = writer.values(b"%.2f", with_resets(vals, resets))
        for c in range(vcpu):
            writer.series_out("node_cpu_seconds_total",
                              [("cpu", str(c)), ("instance", inst), ("job", args.node_job),
                               ("mode", mode)], items, kn)

    total_kb = int(size["memory_gib"] * 1024 * 1024 * 0.975)
    writer.series_out("node_memory_MemTotal_bytes", node, writer.const(b"%d" % (total_kb * 1024)), kn)
    avail = writer.values(b"%d", [(total_kb - int(total_kb * v)) * 1024 for v in mem[:n_obs]])
    for f in nan_faults:
        if f["series"] == "node_memory_MemAvailable_bytes":
            writer.nan(avail, f["indices"])
    writer.series_out("node_memory_MemAvailable_bytes", node, avail, kn)

    prov = size["provisioned_iops"]
    read_share = rng.uniform(0.4, 0.8)
    iops_obs = iops[:n_obs]
    dev = [("device", t["disk"]), ("instance", inst), ("job", args.node_job)]
    cum_io = list(itertools.accumulate(iops_obs))
    fr, fw = prov * read_share * step, prov * (1 - read_share) * step
    r0, w0 = rng.randrange(10**6, 10**9), rng.randrange(10**6, 10**9)
    reads = with_resets([r0 + int(fr * c) for c in cum_io], resets)
    writes = with_resets([w0 + int(fw * c) for c in cum_io], resets)
    writer.series_out("node_disk_reads_completed_total", dev, writer.values(b"%d", reads), kn)
    writer.series_out("node_disk_writes_completed_total", dev, writer.values(b"%d", writes), kn)
    if t["has_io_time"]:
        b0 = rng.uniform(1e4, 1e6)
        busy = itertools.accumulate((1.0 if v > 0.95 else v / 0.95) for v in iops_obs)
        writer.series_out("node_disk_io_time_seconds_total", dev,
                          writer.values(b"%.3f", with_resets([b0 + step * c for c in busy], resets)), kn)

    kp = keep["postgres"]
    server = f"{inst}:5432"
    pg = [("instance", inst), ("job", args.pg_job), ("server", server)]
    active = [int(v * maxc + 0.5) for v in act]
    idle_share = plan["idle_connections"]
    ib = max(1, round(idle_share * maxc))
    idle = [ib if a + ib <= maxc else maxc - a for a in active]
    act_items = writer.values(b"%d", active[:n_obs])
    squeezed = max(active[:n_obs]) + ib > maxc
    idle_items = writer.values(b"%d", idle[:n_obs]) if squeezed else writer.const(b"%d" % ib)
    for f in nan_faults:
        if f["series"] == "pg_stat_activity_count":
            writer.nan(act_items, f["indices"])
    for db, state, items in ((t["app_db"], "active", act_items), (t["app_db"], "idle", idle_items)):
        writer.series_out("pg_stat_activity_count",
                          [("datname", db), ("instance", inst), ("job", args.pg_job), ("server", server),
                           ("state", state)], items, kp)
    writer.series_out("pg_settings_max_connections", pg, writer.const(b"%d" % maxc), kp)
    writer.series_out("pg_up", [("instance", inst), ("job", args.pg_job)], writer.const(b"1"), kp)

    backends = [(a + i) / maxc for a, i in zip(active, idle)]
    return truth_for(t, args, grid, cpu, mem, backends, iops)


# --------------------------------------------------------------------------- truth

def truth_for(t, args, grid, cpu, mem, conn, iops):
    n_obs, W, F = grid.n_obs, grid.weeks, args.future_weeks
    obs = {}
    weekly = {}
    pw = grid.per_week
    for name, series in (("cpu", cpu), ("memory", mem), ("connections", conn), ("iops", iops)):
        o = series[:n_obs]
        wk = [sum(o[w * pw:(w + 1) * pw]) / pw for w in range(W)]
        weekly[name] = [r4(x) for x in wk]
        slope = slope_per_week(wk)
        obs[name] = {"mean": r4(sum(wk) / W), "mean_last_4w": r4(sum(wk[-4:]) / len(wk[-4:])),
                     "max": r4(max(o)), "trend_per_week": r4(slope)}
        if name in ("cpu", "memory"):
            s = sorted(o)
            p99 = quantile(s, 0.99)
            mx1h = max_window_mean(o, grid.per_hour)
            lift = max(slope, 0.0) * HALVING_PROJECTION_WEEKS
            obs[name].update({
                "p90": r4(quantile(s, 0.90)),
                "p99": r4(p99),
                "max_1h_mean": r4(mx1h),
                "projected_p99": r4(p99 + lift),
                "projected_max_1h_mean": r4(mx1h + lift),
            })

    # Halving: every projected peak of CPU and memory, doubled, must stay below the limit.
    reasons = []
    for name in ("cpu", "memory"):
        for stat in ("projected_p99", "projected_max_1h_mean"):
            doubled = 2 * obs[name][stat]
            if doubled >= args.halving_limit:
                reasons.append(f"{name} {stat.replace('projected_', '')} {obs[name][stat]:.2f} "
                               f"-> {doubled:.2f} of the halved size (limit {args.halving_limit:.2f})")
    gap = any(f["kind"] == "gap" for f in t["faults"])
    halving_unsafe_by_peaks = bool(reasons)
    if gap:
        reasons.append("exporter gap in the last 2 weeks: peaks unknown")

    # Saturation, week by week: the last observed week (now) and the weeks after the end.
    def saturated(ws):
        dims = []
        if ws["cpu"]["p90"] >= CPU_SATURATION_P90:
            dims.append("cpu")
        if ws["memory"]["max_1h"] >= MEMORY_FULL_MAX_1H:
            dims.append("memory")
        if ws["connections"]["max"] >= CONNECTIONS_FULL_MAX:
            dims.append("connections")
        if ws["iops"]["p90"] >= IOPS_SATURATION_P90:
            dims.append("iops")
        return dims

    stats = {"cpu": week_stats(grid, cpu, W - 1, W + F, ("mean", "p90", "max_1h")),
             "memory": week_stats(grid, mem, W - 1, W + F, ("mean", "max_1h")),
             "connections": week_stats(grid, conn, W - 1, W + F, ("max",)),
             "iops": week_stats(grid, iops, W - 1, W + F, ("p90",))}
    per_week = []
    for k in range(F + 1):
        ws = {name: stats[name][k] for name in stats}
        per_week.append((k, ws, saturated(ws)))
    now_dims = per_week[0][2]
    future = []
    events = []
    first = {}
    for k, ws, dims in per_week[1:]:
        future.append({"week": k,
                       "cpu_mean": r4(ws["cpu"]["mean"]), "cpu_p90": r4(ws["cpu"]["p90"]),
                       "cpu_max_1h": r4(ws["cpu"]["max_1h"]),
                       "memory_max_1h": r4(ws["memory"]["max_1h"]),
                       "connections_max": r4(ws["connections"]["max"]),
                       "iops_p90": r4(ws["iops"]["p90"]), "saturated": dims})
        for d in dims:
            if d not in first:
                first[d] = k
    later = {"cpu": "saturates CPU (p90 >= 90 %)", "memory": "memory hits 95 % (busiest hour)",
             "connections": "connections reach 95 % of max_connections",
             "iops": "saturates IOPS (p90 >= 90 %)"}
    now = {"cpu": "CPU saturated (p90 >= 90 %)", "memory": "memory at 95 % (busiest hour)",
           "connections": "connections at 95 % of max_connections", "iops": "IOPS saturated (p90 >= 90 %)"}
    for d in now_dims:
        events.append(f"{now[d]} in the last observed week")
    for d, k in sorted(first.items(), key=lambda kv: kv[1]):
        if d not in now_dims:
            events.append(f"{later[d]} in week +{k}")
    future_first = min((k for d, k in first.items() if d not in now_dims), default=None)

    if now_dims:
        cls, why = "scale_up", "saturated now: " + ", ".join(now_dims)
    elif future_first is not None and future_first <= SCALE_UP_HORIZON_WEEKS:
        cls, why = "scale_up", f"saturates in week +{future_first}"
    elif not reasons and obs["cpu"]["mean"] < LOW_CPU_MEAN and obs["memory"]["mean"] < LOW_MEMORY_MEAN:
        cls, why = "scale_down", "halving is safe and utilisation is low"
    else:
        if gap and not halving_unsafe_by_peaks:
            why = "would halve safely, but the exporter gap hides the peaks: hold"
        elif reasons:
            why = "halving unsafe: " + reasons[0]
        else:
            why = "utilisation not low enough to halve"
        cls = "remain"

    s = t["size"]
    faults_out = []
    for f in t["faults"]:
        g = dict(f)
        if f["kind"] == "gap":
            g["start"] = rfc3339(grid.ts[f["start_index"]])
            g["end"] = rfc3339(grid.ts[min(f["end_index"], grid.n - 1)])
        elif f["kind"] == "counter_reset":
            g["at"] = rfc3339(grid.ts[f["index"]])
        else:
            g["count"] = len(f["indices"])
        faults_out.append(g)
    return {
        "id": t["id"],
        "behaviour": t["behaviour"],
        "size": s,
        "disk_device": t["disk"],
        "has_io_time": t["has_io_time"],
        "faults": faults_out,
        "data_gap": gap,
        "observed": obs,
        "weekly_mean": weekly,
        "saturated_now": now_dims,
        "future": future,
        "events": events,
        "first_saturation_week": 0 if now_dims else future_first,
        "halving_unsafe": bool(reasons),
        "halving_unsafe_reasons": reasons,
        "truth_class": cls,
        "truth_reason": why,
        "plan": {k: v for k, v in t["plan"].items()},
    }


# --------------------------------------------------------------------------- inventory

def inventory_yaml(targets, args):
    lines = ["# fleetgen inventory: a loop's `inventory:` file (or paste the targets under it)",
             f"# {len(targets)} targets, seed {args.seed}, end {rfc3339(args.end_ts)}",
             "targets:"]
    teams = ["payments", "search", "catalog", "identity", "analytics", "platform"]
    for i, t in enumerate(targets):
        s = t["size"]
        lines += [
            f"  - id: {t['id']}",
            "    resources:",
            f"      cpu: {s['vcpu']}",
            f"      memory_gib: {s['memory_gib']}",
            "      parameters:",
            f"        shared_buffers: {s['shared_buffers']}",
            f"        effective_cache_size: {s['effective_cache_size']}",
            f"        max_connections: \"{s['max_connections']}\"",
            f"    labels: {{ fleet: fleetgen, team: {teams[i % len(teams)]} }}",
            f"    provisioned_iops: {s['provisioned_iops']}",
        ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=200, help="fleet size (default 200)")
    ap.add_argument("--weeks", type=int, default=13, help="observed weeks (default 13)")
    ap.add_argument("--step", type=int, default=300, help="seconds between samples (default 300)")
    ap.add_argument("--seed", type=int, default=1, help="(default 1): same seed and end, same bytes")
    ap.add_argument("--end", help="RFC 3339 end of the window (default: the last Monday 06:00 UTC)")
    ap.add_argument("--format", choices=["prometheus", "openmetrics"], default="prometheus",
                    help="prometheus: text format, ms timestamps (VictoriaMetrics import); "
                         "openmetrics: seconds, '# EOF' (promtool backfill)")
    ap.add_argument("--out", default="-", help="series file (default stdout; '' for none)")
    ap.add_argument("--truth", help="ground-truth JSON file")
    ap.add_argument("--inventory", help="inventory.yaml (a loop's inventory: file)")
    ap.add_argument("--prefix", default="pgf", help="target id prefix (ids are PREFIX-0001…)")
    ap.add_argument("--future-weeks", type=int, default=6, help="weeks after the end in the truth (default 6)")
    ap.add_argument("--io-time-share", type=float, default=0.3,
                    help="share of targets with node_disk_io_time_seconds_total (default 0.3)")
    ap.add_argument("--gap-share", type=float, default=0.08, help="share with a multi-day exporter gap (default 0.08)")
    ap.add_argument("--reset-share", type=float, default=0.12, help="share with counter resets (default 0.12)")
    ap.add_argument("--nan-share", type=float, default=0.12, help="share with NaN (and, separately, absent) samples (default 0.12)")
    ap.add_argument("--cpu-modes", default="idle,user,system", help="node_cpu_seconds_total modes written (default idle,user,system)")
    ap.add_argument("--behaviours", help="comma-separated subset of: " + ", ".join(BEHAVIOURS))
    ap.add_argument("--halving-limit", type=float, default=HALVING_LIMIT,
                    help=f"halved size must keep the projected peaks below this (default {HALVING_LIMIT})")
    ap.add_argument("--node-job", default="node")
    ap.add_argument("--pg-job", default="postgres")
    ap.add_argument("--print-end", action="store_true", help="print the resolved end (RFC 3339) and exit")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    args.cpu_modes = [m for m in args.cpu_modes.split(",") if m]
    if "idle" not in args.cpu_modes or not set(args.cpu_modes) <= {"idle", "user", "system"}:
        ap.error("--cpu-modes: idle plus any of user, system")
    if args.behaviours:
        args.behaviours = args.behaviours.split(",")
        bad = set(args.behaviours) - set(BEHAVIOURS)
        if bad:
            ap.error(f"unknown behaviours: {sorted(bad)}")
    if args.step <= 0 or WEEK % args.step:
        ap.error("--step must divide a week")
    args.end_ts = parse_time(args.end) if args.end else default_end()
    if args.end_ts % args.step:
        ap.error("--end must be a multiple of --step since the epoch")
    if args.print_end:
        print(rfc3339(args.end_ts))
        return 0

    t0 = time.perf_counter()
    master = random.Random(f"fleetgen:{args.seed}")
    grid = Grid(args.end_ts, args.weeks, args.step, args.future_weeks)
    noise = Noise(master)
    # equal shares of the behaviours, in an order drawn from the seed (ids say nothing)
    kinds = args.behaviours or BEHAVIOURS
    order = [kinds[i % len(kinds)] for i in range(args.targets)]
    master.shuffle(order)
    targets = [make_target(i, b, args, grid) for i, b in enumerate(order)]

    if args.out == "":
        fh = open(os.devnull, "wb")
    elif args.out == "-":
        fh = sys.stdout.buffer
    else:
        fh = open(args.out, "wb", buffering=1 << 22)
    totals = {"series": 0, "samples": 0, "bytes": 0}
    truths = []
    writer = Writer(fh, args.format, grid)
    for t in targets:
        truths.append(generate_target(t, args, grid, noise, writer))
    for k in totals:
        totals[k] = getattr(writer, k)
    for t in targets:
        t.pop("rng", None)
    if args.format == "openmetrics":
        fh.write(b"# EOF\n")
    fh.flush()
    if fh is not sys.stdout.buffer:
        fh.close()
    elapsed = time.perf_counter() - t0

    if args.truth:
        counts = {}
        for tr in truths:
            counts.setdefault(tr["truth_class"], 0)
            counts[tr["truth_class"]] += 1
        doc = {
            "generator": "fleetgen",
            "seed": args.seed,
            "start": rfc3339(grid.start),
            "end": rfc3339(grid.end),
            "weeks": args.weeks,
            "step_seconds": args.step,
            "future_weeks": args.future_weeks,
            "rules": {
                "cpu_saturated_week": f"weekly p90 of 5-min CPU >= {CPU_SATURATION_P90}",
                "memory_full_week": f"weekly busiest 1-hour mean of memory >= {MEMORY_FULL_MAX_1H}",
                "connections_full_week": f"weekly max of backends / max_connections >= {CONNECTIONS_FULL_MAX}",
                "iops_saturated_week": f"weekly p90 of (reads+writes)/provisioned IOPS >= {IOPS_SATURATION_P90}",
                "halving_unsafe": f"any of p99 and busiest 1-hour mean of CPU and memory over the window, plus "
                                  f"{HALVING_PROJECTION_WEEKS} weeks of its (non-negative) weekly trend, doubled, "
                                  f">= {args.halving_limit}; or an exporter gap",
                "scale_up": f"saturated in the last observed week, or in weeks +1..+{SCALE_UP_HORIZON_WEEKS}",
                "scale_down": f"halving safe and window mean CPU < {LOW_CPU_MEAN} and memory < {LOW_MEMORY_MEAN}",
                "remain": "otherwise",
            },
            "class_counts": counts,
            "targets": truths,
        }
        with open(args.truth, "w") as f:
            json.dump(doc, f, indent=1)
    if args.inventory:
        with open(args.inventory, "w") as f:
            f.write(inventory_yaml(targets, args))
    if not args.quiet:
        try:
            import resource
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        except Exception:  # pragma: no cover
            rss = float("nan")
        print(f"fleetgen: {args.targets} targets, {args.weeks} weeks at {args.step} s, "
              f"{totals['series']} series, {totals['samples']} samples, {totals['bytes'] / 1e6:.0f} MB "
              f"({args.format}) in {elapsed:.1f} s, peak RSS {rss:.0f} MiB; end {rfc3339(grid.end)}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
