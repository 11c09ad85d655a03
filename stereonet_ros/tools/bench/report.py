"""The tables ``stereonet-bench`` prints: one per report section (times in ms, memory in MiB)."""
from __future__ import annotations

from typing import Any, Dict


def format_report(r: Dict[str, Any]) -> str:
    """Human-readable tables of a report dict (what ``main`` prints)."""
    m = r["meta"]
    lines = [f"stereonet-bench  {m['date_utc']}  device {m['device']}"
             + (f" ({m['gpu']})" if m.get("gpu") else "")
             + f"  CPU {m['cpu']} x{m['cpu_count']}  torch {m['torch']} ({m['torch_threads']} threads, "
             f"OMP_WAIT_POLICY {m['omp_wait_policy']}, load average "
             f"{'?' if not m.get('load_average') else format(m['load_average'][0], '.1f')})",
             f"model: {m['engine']}"]
    if m.get("checkpoint_note"):
        lines.append("!!! " + m["checkpoint_note"])
    if r.get("model"):
        lines += ["", "Model only (forward, inputs on the device)",
                  f"{'size':>10} {'prec':>5} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'Hz':>8}"]
        lines += [f"{x['size']:>10} {x['precision']:>5} {x['mean_ms']:9.1f} {x['p50_ms']:9.1f} "
                  f"{x['p95_ms']:9.1f} {x['hz']:8.2f}" for x in r["model"]]
    if r.get("memory"):
        lines += ["", "Peak memory (MiB)", f"{'size':>10} {'host RSS before':>16} {'host peak':>10} {'GPU peak':>9}"]
        for x in r["memory"]:
            g = x["gpu_peak_allocated_mib"]
            lines.append(f"{x['size']:>10} {x['host_rss_before_mib'] or 0:16.0f} {x['host_peak_rss_mib'] or 0:10.0f} "
                         f"{'-' if g is None else f'{g:.0f}':>9}")
    if r.get("peak"):
        lines += ["", "Convolution work vs the measured peak (a 64->64 3x3 conv at 240x320)",
                  f"{'size':>10} {'prec':>5} {'GFLOP':>7} {'ms':>7} {'GFLOP/s':>8} {'peak':>7} {'% peak':>7}"]
        lines += [f"{x['size']:>10} {x['precision']:>5} {x['model_gflop']:7.2f} {x['model_ms']:7.1f} "
                  f"{x['achieved_gflops']:8.0f} {x['peak_gflops']:7.0f} {x['pct_of_peak']:7.1f}" for x in r["peak"]]
    if r.get("node"):
        lines += ["", "Node overhead per frame over DDS (ms; the network replayed; 'serial': the part in the "
                  "inference thread, which adds to the frame period - publishing overlaps the next frame)",
                  f"{'size':>10} {'decode':>7} {'pre':>6} {'post':>6} {'numpy':>6} {'publish':>8} "
                  f"{'overhead':>9} {'serial':>7} {'DDS':>6} {'% period':>9} {'est Hz':>7}"]
        for x in r["node"]:
            s = x["stages_ms"]
            if x.get("overhead_ms") is None:
                lines.append(f"{x['size']:>10}  no frame came back ({x['lost']} lost)")
                continue
            pct = x.get("serial_overhead_pct_of_period")
            lines.append(f"{x['size']:>10} {s['decode']:7.1f} {s['preprocess']:6.1f} {s['postprocess']:6.1f} "
                         f"{s['postprocess_numpy']:6.1f} {s['publish']:8.1f} {x['overhead_ms']:9.1f} "
                         f"{x['serial_overhead_ms']:7.1f} {x['transport_ms']:6.1f} {'-' if pct is None else f'{pct:.1f}':>9} "
                         f"{x.get('est_node_hz') or 0:7.2f}")
    if r.get("stream"):
        lines += ["", "Node with its network, fed faster than it keeps up (a disparity every ... ms)",
                  f"{'size':>10} {'threads':>8} {'prec':>5} {'frames':>7} {'period':>8} {'p95':>7} {'Hz':>6} "
                  f"{'model':>7} {'publish':>8} {'/ SGBM':>7}"]
        fmt = lambda v, f=".1f": "-" if v is None else format(v, f)  # noqa: E731
        for x in r["stream"]:
            st = x["stages_ms"]
            threads = f"{x['num_threads']}->{x['engine_threads']}" if x["num_threads"] == 0 else str(x["num_threads"])
            lines.append(f"{x['size']:>10} {threads:>8} {x['precision']:>5} {x['frames']:7d} "
                         f"{fmt(x['period_ms']):>8} {fmt(x['period_p95_ms']):>7} {x['hz']:6.2f} "
                         f"{fmt(st.get('model')):>7} {fmt(st.get('publish')):>8} "
                         f"{fmt(x.get('period_over_sgbm'), '.2f'):>7}")
    if r.get("sgbm"):
        lines += ["", "OpenCV StereoSGBM (and StereoBM) on the same frames",
                  f"{'size':>10} {'ndisp':>6} {'mean ms':>9} {'Hz':>7} {'BM ms':>7} {'StereoNet/SGBM':>15} "
                  f"{'best prec/SGBM':>15}"]
        fmt = lambda v: "-" if v is None else format(v, ".2f")  # noqa: E731
        lines += [f"{x['size']:>10} {x['num_disparities']:6d} {x['mean_ms']:9.1f} {x['hz']:7.2f} "
                  f"{x['stereobm_mean_ms']:7.1f} {fmt(x['ratio_model_over_sgbm']):>15} {fmt(x['ratio_best_precision_over_sgbm']):>15}"
                  for x in r["sgbm"]]
    if r.get("knobs"):
        lines += ["", "Knobs (full engine.infer, one varied at a time, then input_scale:refiners settings; "
                  "interleaved rounds, SGBM in the same rounds)",
                  f"{'knob':>14} {'value':>11} {'size':>10} {'prec':>5} {'scale':>5} {'cands':>5} {'refs':>4} "
                  f"{'mean ms':>9} {'x base':>7} {'x SGBM':>7}"]
        lines += [f"{x['knob']:>14} {str(x['value']):>11} {x['size']:>10} {x['precision']:>5} {x['input_scale']:5g} "
                  f"{x['candidates']:5d} {x['refiners']:4d} {x['mean_ms']:9.1f} {x['ratio_vs_base']:7.2f} "
                  f"{x['ratio_vs_sgbm']:7.2f}"
                  for x in r["knobs"]]
    mi = r.get("micro")
    if mi:
        lines += ["", "Micro (interleaved A/B, speed-up = A / B)"]
        pairs = list(mi.get("cost_volume", [])) + [mi[k] for k in ("fold_bn", "channels_last", "compile", "threads")
                                                   if k in mi and "a_mean_ms" in mi[k]]
        for p in pairs:
            lines.append(f"  {p['name']:>14} {p.get('size', ''):>10}: {p['a']} {p['a_mean_ms']:.2f} ms vs "
                         f"{p['b']} {p['b_mean_ms']:.2f} ms -> x{p['speedup_b_over_a']:.2f}")
        if mi.get("compile"):
            c = mi["compile"]
            lines.append(f"  compile ({c['backend']}): {c['state']} after {c['compile_s']:.0f} s in the background, "
                         f"first frame served eagerly in {c['first_frame_ms']:.0f} ms {c.get('error') or ''}")
    lines.append(f"\n(wall time {m.get('wall_s', 0):.0f} s)")
    return "\n".join(lines)
