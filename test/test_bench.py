"""Smoke test of ``stereonet-bench``: every report section is produced on a tiny run.

No timing assertions: speed is measured by the benchmark itself, never by unit tests.
"""
from __future__ import annotations

import json

from stereonet_ros import bench


def test_bench_report_has_every_section(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--checkpoint", str(tiny_checkpoint), "--sizes", "64x48", "--iters", "1",
                       "--warmup", "0", "--node-frames", "1", "--max-disparity", "0", "32",
                       "--input-scale", "1", "0.5", "--refiners", "1", "0", "--micro",
                       "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    for section in ("meta", "model", "memory", "node", "sgbm", "knobs", "micro"):
        assert report.get(section), f"section '{section}' missing or empty"
    assert report["meta"]["config"]["features"] == 8
    assert {r["precision"] for r in report["model"]} == {"fp32"}  # CPU-only test machine
    for key in ("mean_ms", "p50_ms", "p95_ms", "hz"):
        assert key in report["model"][0]
    mem = report["memory"][0]
    assert mem["host_peak_rss_mib"] > 0 and "gpu_peak_allocated_mib" in mem
    node = report["node"][0]
    assert node["frames"] == 1, node  # the frame crossed DDS both ways
    for stage in ("decode", "preprocess", "postprocess", "postprocess_numpy", "publish", "total"):
        assert node["stages_ms"][stage] is not None
    assert "overhead_ms" in node and "overhead_pct_of_frame" in node
    assert report["sgbm"][0]["ratio_model_over_sgbm"] is not None
    knobs = {(k["knob"], str(k["value"])) for k in report["knobs"]}
    assert knobs == {("base", ""), ("input_scale", "0.5"), ("max_disparity", "32.0"), ("refiners", "0")}
    micro = report["micro"]
    assert micro["cost_volume"][0]["max_abs_diff"] < 1e-5  # the loop reference agrees
    assert "channels_last" in micro and "threads" in micro
    assert "Model only" in capsys.readouterr().out
