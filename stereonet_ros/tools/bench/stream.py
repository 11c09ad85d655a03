"""The stream section: the real ``StereoNetNode`` with its real network, fed pairs faster than
it keeps up, as a camera does; what counts is how often a disparity comes out (the frame
period, ms), next to SGBM's time on the same frames from the same run.

Unlike the node section (one frame at a time, network replayed: the overhead per frame), this
is the rate a user sees: inference, the node's own work and publishing overlap or not as the
node's threads allow. Rows per size and per ``num_threads`` setting (0 = the node's default,
``engine_config.default_threads``)."""
from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple

from .inputs import make_frames
from .node import NodeHarness, in_private_domain, node_params
from .timing import summarize

if TYPE_CHECKING:  # the session imports this module
    from .session import Bench

#: pairs are sent at least this often (Hz), faster when the model section says the node can
#: keep up with more, so that the node always has a newer pair waiting
MIN_FEED_HZ = 30.0


def stream_threads() -> Tuple[int, ...]:
    """The thread settings compared: the node's default (0), and the other choice: every core
    when the default leaves one to the executor, else every core but one."""
    from ...engine_config import default_threads
    cores = os.cpu_count() or 1
    other = cores if default_threads() != cores else cores - 1
    return (0, other) if other >= 1 else (0,)


def run_stream(bench: Bench, seconds: float = 10.0, warmup_s: float = 3.0,
               threads: Sequence[int] = ()) -> List[Dict[str, Any]]:
    """Per size and thread setting: disparities received per second over ``seconds`` (after
    ``warmup_s`` of feeding), the period (ms), and the node's drop and stage counters."""
    def rows(ctx: Any) -> List[Dict[str, Any]]:
        out = []
        for idx, size in enumerate(bench.cfg.sizes):
            for n in threads or stream_threads():
                out.append(_stream_one(bench, ctx, f"/stream{idx}_{n}", size, n, seconds, warmup_s))
        return out
    return in_private_domain(rows)


def _stream_one(bench: Bench, ctx: Any, ns: str, size: Tuple[int, int], num_threads: int,
                seconds: float, warmup_s: float) -> Dict[str, Any]:
    w, h = size
    arrivals: List[float] = []   # perf_counter times of disparity messages
    lock = threading.Lock()

    def on_out(topic: str, stamp: Tuple[int, int], t: float) -> None:
        if topic == "disparity":
            with lock:
                arrivals.append(t)

    rig = NodeHarness(ctx, ns, node_params(bench, num_threads=num_threads), on_out)
    try:
        rig.matched()
        frames = bench.frames.get(size) or make_frames(w, h)
        model = bench.auto_model_ms(size)
        feed_hz = max(MIN_FEED_HZ, 2e3 / model) if model else MIN_FEED_HZ
        rig.send(frames, first=True)
        t_start = time.perf_counter()
        t_measure, t_end = t_start + warmup_s, t_start + warmup_s + seconds
        stats_at_start = None
        sent = 0
        while True:
            now = time.perf_counter()
            if now >= t_end:
                break
            if stats_at_start is None and now >= t_measure:
                stats_at_start = rig.node.stats.snapshot()
            rig.send(frames)
            sent += 1
            time.sleep(max(0.0, t_start + sent / feed_hz - time.perf_counter()))
        stats_at_end = rig.node.stats.snapshot()
        # The stage times of the frames finished while measuring, not of the warm-up's.
        measured = stats_at_end["processed"] - (stats_at_start or {"processed": 0})["processed"]
        frames_ms = rig.node.stats.recent_frames()[-measured:] if measured else []
        engine = rig.node.engine
    finally:
        rig.close()
    with lock:
        got = [t for t in arrivals if t_measure <= t < t_end]
    hz = len(got) / seconds
    gaps = [1e3 * (b - a) for a, b in zip(got, got[1:])]
    drops = {k: stats_at_end["drops"].get(k, 0) - (stats_at_start or {}).get("drops", {}).get(k, 0)
             for k in stats_at_end["drops"]}
    stages = {k: summarize([f[k] for f in frames_ms if k in f])["mean_ms"]
              for k in ("model", "postprocess_numpy", "publish", "handoff", "total") if any(k in f for f in frames_ms)}
    row = {"size": f"{w}x{h}", "num_threads": num_threads, "engine_threads": engine.num_threads,
           "precision": engine.precision_name, "feed_hz": feed_hz, "seconds": seconds,
           "frames": len(got), "hz": hz, "period_ms": (1e3 / hz) if hz else None,
           "period_p95_ms": summarize(gaps)["p95_ms"] if gaps else None,
           "drops": {k: v for k, v in drops.items() if v}, "stages_ms": stages}
    bench.log(f"  stream {w}x{h} num_threads {num_threads} (engine {engine.num_threads}): "
              f"{hz:.2f} Hz, a disparity every {row['period_ms'] or float('nan'):.1f} ms "
              f"(fed {feed_hz:.0f} Hz; model {stages.get('model', float('nan')):.1f} ms, "
              f"numpy outputs + publish {stages.get('postprocess_numpy', 0.0) + stages.get('publish', float('nan')):.1f} ms "
              "in parallel)")
    return row


def add_sgbm_ratios(stream: List[Dict[str, Any]], sgbm: List[Dict[str, Any]]) -> None:
    """Each stream row's period over SGBM's mean time on the same size from the same run."""
    by_size = {x["size"]: x["mean_ms"] for x in sgbm}
    for row in stream:
        s = by_size.get(row["size"])
        row["sgbm_ms"] = s
        row["period_over_sgbm"] = (row["period_ms"] / s) if (s and row["period_ms"]) else None
