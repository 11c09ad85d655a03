"""Pure functions without ROS: pairing, parameters, metrics, geometry conventions."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from stereonet_ros.geometry import (GeometryError, StereoGeometry, depth_to_points, disparity_to_depth,
                                    geometry_from_projections, raw_to_published_disparity)
from stereonet_ros.metrics import disparity_metrics, mean_metrics
from stereonet_ros.params import SPECS, validate, validate_all
from stereonet_ros.sync import StereoPairer


def msg(t_ns):
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=t_ns // 10**9, nanosec=t_ns % 10**9)))


def test_exact_pairer_pairs_equal_stamps_and_counts_the_rest():
    dropped = []
    p = StereoPairer("exact", queue_size=3, on_discard=dropped.append)
    assert p.add_left(msg(100)) is None
    assert p.add_right(msg(101)) is None
    assert p.add_left(msg(200)) is None
    pair = p.add_right(msg(200))
    assert pair is not None and pair[0].header.stamp.nanosec == 200
    assert sum(dropped) == 2 and p.pending() == (0, 0)  # 100 (left) and 101 (right) can never pair
    for t in range(300, 306):
        p.add_left(msg(t))
    assert p.pending() == (3, 0) and sum(dropped) == 5  # queue overflow counted


def test_approximate_pairer_uses_slop():
    dropped = []
    p = StereoPairer("approximate", slop=0.005, on_discard=dropped.append)
    p.add_left(msg(1_000_000_000))
    assert p.add_right(msg(1_006_000_000)) is None         # 6 ms > 5 ms slop
    pair = p.add_left(msg(1_007_000_000))                  # 1 ms from the waiting right
    assert pair is not None and pair[1].header.stamp.nanosec == 6_000_000
    assert sum(dropped) == 1                               # the 1.000 s left image


def test_pairer_rejects_bad_settings():
    with pytest.raises(ValueError, match="sync mode"):
        StereoPairer("nearest")
    with pytest.raises(ValueError, match="slop"):
        StereoPairer("approximate", slop=-1)


def test_config_file_matches_parameter_specs_and_validates():
    with open("config/stereonet.yaml") as f:
        doc = yaml.safe_load(f)
    values = doc["/**"]["ros__parameters"]
    assert set(values) == set(SPECS)
    assert validate_all(values) == []
    for name, spec in SPECS.items():
        assert type(values[name]) is type(spec.default), name


@pytest.mark.parametrize("name,value,fragment", [
    ("device", "gpu", "auto | cpu | cuda"), ("precision", "int8", "must be one of"),
    ("input_scale", -0.5, "[0, 2]"), ("input_scale", 2.5, "[0, 2]"), ("sync_mode", "fast", "exact"),
    ("queue_size", 0, "[1,"), ("cloud_decimation", 2.5, "integer"), ("publish_depth", "yes", "true or false"),
    ("max_depth", float("nan"), "finite"), ("refiners", -2, "[-1,"), ("refiners", 1.0, "integer"), ("nonexistent", 1, "unknown parameter"),
])
def test_bad_parameter_values_are_rejected_with_reason(name, value, fragment):
    err = validate(name, value)
    assert err is not None and fragment in err and name in err


def test_cross_parameter_validation():
    values = {n: s.default for n, s in SPECS.items()}
    values.update(min_depth=5.0, max_depth=2.0)
    assert any("max_depth" in e for e in validate_all(values))


def test_metrics_exact_values():
    gt = np.array([[1.0, 2.0, 10.0, 0.0], [np.inf, 4.0, 100.0, 3.0]])
    pred = np.array([[1.5, 2.0, 14.0, 9.0], [5.0, np.nan, 1.0, 3.0]])
    m = disparity_metrics(pred, gt, max_disparity=64)
    # valid gt: 1, 2, 10, 0, 4, 3 (inf and >= 64 excluded); errors 0.5, 0, 4, 9, |4| (nan pred), 0
    errs = np.array([0.5, 0, 4, 9, 4, 0])
    assert m["valid_pixels"] == 6
    assert m["epe"] == pytest.approx(errs.mean())
    assert m["bad1"] == pytest.approx(100 * 3 / 6)        # 4, 9 and the invalid prediction
    assert m["bad0.5"] == pytest.approx(100 * 3 / 6)      # 0.5 is not > 0.5
    assert m["d1"] == pytest.approx(100 * 3 / 6)          # 4>3 & >5% of 10; 9; invalid
    assert m["density"] == pytest.approx(100 * 5 / 6)
    kitti = disparity_metrics(pred, gt, zero_is_invalid=True)
    assert kitti["valid_pixels"] == 6  # the zero is excluded, 100 is included without max_disparity
    empty = disparity_metrics(pred, np.full_like(gt, np.nan))
    assert math.isnan(empty["epe"]) and empty["valid_pixels"] == 0
    mm = mean_metrics([m, {"epe": 1.0, "valid_pixels": 2, **{k: 0.0 for k in m if k not in ("epe", "valid_pixels")}}])
    assert mm["epe"] == pytest.approx((errs.sum() + 2.0) / 8)


def test_verged_rectification_offset_and_depth():
    fx, base, cxl, cxr = 400.0, 0.2, 320.0, 300.0
    g = geometry_from_projections([fx, 0, cxl, 0, 0, fx, 240, 0, 0, 0, 1, 0],
                                  [fx, 0, cxr, -fx * base, 0, fx, 240, 0, 0, 0, 1, 0], 640, 480)
    assert g.baseline == pytest.approx(base) and g.cx_offset == pytest.approx(20.0)
    # a point at Z=4 m: x_l - x_r = fT/Z + (cx_l - cx_r) = 20 + 20
    raw = np.full((2, 2), 40.0, np.float32)
    d = raw_to_published_disparity(raw, g)
    np.testing.assert_allclose(disparity_to_depth(d, g), 4.0, rtol=1e-6)
    pts = depth_to_points(np.full((3, 3), 2.0, np.float32), g)
    assert pts[0, 0, 0] == pytest.approx((0 - cxl) * 2.0 / fx) and pts[2, 1, 1] == pytest.approx((2 - 240) * 2.0 / fx)


@pytest.mark.parametrize("p_right,fragment", [
    ([400, 0, 320, 0, 0, 400, 240, 0, 0, 0, 1, 0], "not positive"),
    ([400, 0, 320, 80, 0, 400, 240, 0, 0, 0, 1, 0], "not positive"),
    ([400, 0, 320, -400 * 120, 0, 400, 240, 0, 0, 0, 1, 0], "implausible"),
    ([0, 0, 320, -40, 0, 400, 240, 0, 0, 0, 1, 0], "focal length"),
    ([400, 0, 320, float("nan"), 0, 400, 240, 0, 0, 0, 1, 0], "NaN"),
])
def test_bad_baselines_are_errors(p_right, fragment):
    with pytest.raises(GeometryError, match=fragment):
        geometry_from_projections([400, 0, 320, 0, 0, 400, 240, 0, 0, 0, 1, 0], p_right, 640, 480)


# ----- first-day behaviour (issue 11): parameters, calibration, outputs -------------------
def test_unknown_parameter_names_the_closest_valid_one():
    from stereonet_ros.params import unknown_parameter_errors
    qos = "qos_overrides./cam/left/image_rect.subscription.reliability"
    errs = unknown_parameter_errors(["refiner", "max_disparty", "refiners", "zzzz", qos.replace("reli", "rel")],
                                    list(SPECS) + [qos])
    assert len(errs) == 4, errs  # 'refiners' is known
    by_name = {e.split("'")[1]: e for e in errs}
    assert "did you mean 'refiners'?" in by_name["refiner"]
    assert "did you mean 'max_disparity'?" in by_name["max_disparty"]
    assert "no parameter has a similar name" in by_name["zzzz"]
    # a QoS typo is matched against the QoS names, not the node's parameters
    assert f"did you mean '{qos}'?" in by_name[qos.replace("reli", "rel")]


def test_help_text_lists_every_parameter_with_type_default_and_valid_values():
    from stereonet_ros.params import help_text
    text = help_text()
    lines = text.splitlines()
    for name, spec in SPECS.items():
        head = [ln for ln in lines if ln.startswith(f"  {name} (")]
        assert len(head) == 1, name
        assert f"({spec.type_name}, default " in head[0] and "valid: " in head[0], head[0]
    line = {ln.split()[0]: ln for ln in lines if ln.startswith("  ") and not ln.startswith("      ")}
    # the valid values, in words, for each kind of check
    assert "valid: 32FC1 | 16UC1" in line["depth_format"]
    assert "valid: integer in [1, 1000]" in line["queue_size"] and "default 10;" in line["queue_size"]
    assert "valid: number in [0, 2]" in line["input_scale"]
    assert "valid: auto | cpu | cuda | cuda:N" in line["device"]
    assert "valid: true | false" in line["lr_check"] and "default false" in line["lr_check"]
    assert "1073741824" in line["max_image_pixels"]  # not 1.07374e+09


def test_split_ros_args_separates_the_programs_own_arguments():
    from stereonet_ros.params import split_ros_args
    own, ros = split_ros_args(["--help", "--ros-args", "-p", "refiners:=1", "-r", "a:=b", "--", "-x"])
    assert own == ["--help", "-x"] and ros == ["--ros-args", "-p", "refiners:=1", "-r", "a:=b"]
    assert split_ros_args(["--ros-args", "--params-file", "f.yaml"]) == ([], ["--ros-args", "--params-file", "f.yaml"])


def test_depth_in_millimetres_is_rep118_16uc1():
    from stereonet_ros.geometry import depth_to_millimetres
    z = np.array([[1.2344, 0.0004, np.nan, 65.535, 65.6, 0.0015, -1.0]], np.float32)
    mm = depth_to_millimetres(z)
    assert mm.dtype == np.uint16
    # 1234 mm; < 0.5 mm, NaN, beyond 65.535 m and negative are 0 (invalid), never wrapped
    np.testing.assert_array_equal(mm, [[1234, 0, 0, 65535, 0, 2, 0]])


def test_match_window_leaves_out_the_columns_without_a_full_search():
    from stereonet_ros.pipeline import match_window
    assert match_window(96, 64, 64.0) == (64, 0, 32, 64)
    assert match_window(96, 64, 63.5) == (64, 0, 32, 64)   # x < 63.5: columns 0..63
    assert match_window(40, 30, 64.0) == (40, 0, 0, 30)    # the range is wider than the image
    assert match_window(40, 30, 0.0) == (0, 0, 40, 30)


def _info(d, r, p, w=640, h=480):
    return SimpleNamespace(width=w, height=h, d=d, r=r, p=p)


def test_raw_calibration_next_to_rectified_images_is_no_warning():
    """image_proc's rectify republishes the raw camera_info (D != 0, R != I) with the
    rectified image; with a valid P that is the normal case, reported but not a warning."""
    from stereonet_ros.geometry import raw_calibration
    from stereonet_ros.pipeline import camera_info_report, check_camera_info
    c, s = math.cos(0.05), math.sin(0.05)
    r_rot = [c, 0, s, 0, 1, 0, -s, 0, c]
    d_raw = [-0.28, 0.07, 0.0002, -0.0001, 0.0]
    pl = [400, 0, 320, 0, 0, 400, 240, 0, 0, 0, 1, 0]
    pr = [400, 0, 320, -400 * 0.12, 0, 400, 240, 0, 0, 0, 1, 0]
    li, ri = _info(d_raw, r_rot, pl), _info(d_raw, r_rot, pr)
    assert raw_calibration(d_raw, r_rot) and not raw_calibration([0.0] * 5, np.eye(3).ravel())
    geom, warns = check_camera_info(li, ri, 640, 480)
    assert warns == [] and geom.baseline == pytest.approx(0.12)
    level, text, kv = camera_info_report(li, ri, (640, 480))
    assert (level, text) == (0, "ok") and kv["raw D/R left"] == "True" and kv["raw D/R right"] == "True"
    # the real checks stay: intrinsics disagreement, baseline sign, resolution
    pr_cy = list(pr)
    pr_cy[6] = 250
    assert check_camera_info(li, _info(d_raw, r_rot, pr_cy), 640, 480)[1] != []
    assert camera_info_report(li, _info(d_raw, r_rot, pr_cy), (640, 480))[0] == 1
    pr_neg = list(pr)
    pr_neg[3] = +400 * 0.12
    assert camera_info_report(li, _info(d_raw, r_rot, pr_neg), (640, 480))[0] == 2
    assert camera_info_report(li, ri, (320, 240))[0] == 2


def test_sgbm_holes_are_filled_from_the_left_then_from_the_right_at_a_row_start():
    import numpy as np
    from stereonet_ros.tools.baseline import fill_holes_from_left
    n = np.nan
    d = np.array([[n, n, 3.0, n, 5.0, n],       # row start: first value to the right
                  [1.0, n, n, 4.0, n, n],       # interior and trailing holes: value to the left
                  [n, n, n, n, n, n]], np.float32)  # nothing to fill from
    out = fill_holes_from_left(d)
    np.testing.assert_array_equal(out[0], [3, 3, 3, 3, 5, 5])
    np.testing.assert_array_equal(out[1], [1, 1, 1, 4, 4, 4])
    assert np.isnan(out[2]).all() and np.isnan(d[0, 0])   # input untouched


# ----- node helpers without ROS ------------------------------------------------------------------
def test_kind_throttle_logs_a_new_kind_at_once_and_a_repeat_once_per_period():
    from stereonet_ros.log_throttle import KindThrottle
    t = KindThrottle()
    assert t.admit("bad_size", "frame 1: 640x480 vs 320x240", 5.0, now=0.0) == "frame 1: 640x480 vs 320x240"
    assert t.admit("bad_size", "frame 2: 640x480 vs 320x240", 5.0, now=1.0) is None    # same kind
    assert t.admit("bad_size", "other problem", 5.0, now=1.5) == "other problem"       # a new kind
    assert t.admit("bad_data", "frame 3: 640x480 vs 320x240", 5.0, now=2.0) is not None  # other key
    line = t.admit("bad_size", "frame 9: 640x480 vs 320x240", 5.0, now=5.0)
    assert line == "frame 9: 640x480 vs 320x240 [1 more since the last report, counted in /diagnostics]"
    small = KindThrottle(max_kinds=2)   # memory is bounded: past 2 kinds it starts over
    for i, word in enumerate("abcd"):
        assert small.admit("k", word, 60.0, now=float(i)) == word
    assert small.admit("k", "d", 60.0, now=4.0) is None      # remembered after the restart
    assert small.admit("k", "a", 60.0, now=4.0) == "a"       # forgotten: logged early, not lost


def test_camera_info_cache_pairs_only_fresh_infos_and_reports_the_worst_finding():
    from helpers import camera_infos
    from stereonet_ros.camera_infos import CameraInfoCache
    from stereonet_ros.pipeline import FrameError
    c = CameraInfoCache(timeout=2.0)
    with pytest.raises(FrameError, match="no left/camera_info"):
        c.pair(now=0.0)
    li, ri = camera_infos(96, 64, 200.0, 0.1)
    c.update("left", li, now=0.0)
    c.update("right", ri, now=0.5)
    assert c.pair(now=1.0) == (li, ri)
    with pytest.raises(FrameError, match=r"left/camera_info is 3.0 s old \(camera_info_timeout 2 s\)"):
        c.pair(now=3.0)
    level, text, values = c.report((96, 64), now=1.0)
    assert level == 2 and values["age_s right"] == "0.50"   # no frame computed yet: NO_INFO_YET
    assert not c.frame_done([])                              # the first frame ends nothing
    assert c.report((96, 64), now=1.0)[0] == 0
    assert c.report((96, 64), now=2.3)[1].startswith("left/camera_info is stale (2.3 s old)")
    c.frame_failed("baseline 0 m")
    assert c.report((96, 64), now=1.0)[:2] == (2, "baseline 0 m")
    assert c.frame_done(["fy differ"])                       # recovery from a calibration drop
    assert c.report((96, 64), now=1.0)[:2] == (1, "fy differ")


def test_no_input_text_names_the_inputs_never_received():
    from stereonet_ros.diagnostics import INPUT_TOPICS, no_input_text
    topics = {t: f"/cam/{t}" for t in INPUT_TOPICS}
    text = no_input_text(12.4, topics, {"left/image_rect": 3, "left/camera_info": 1}, "exact", 0.01)
    assert text.startswith("no stereo pair for 12 s on /cam/left/image_rect + /cam/right/image_rect")
    assert "never received: /cam/right/image_rect, /cam/right/camera_info" in text
    text = no_input_text(5, topics, {t: 1 for t in INPUT_TOPICS}, "approximate", 0.02)
    assert "stamps differ (sync_mode approximate, sync_slop 0.02 s)" in text


def test_engine_config_is_the_node_engine_parameters_with_their_flags(tiny_checkpoint):
    import argparse
    import dataclasses
    from stereonet_ros.engine_config import ENGINE_PARAMS, EngineConfig
    from stereonet_ros.params import SPECS
    assert {f.name for f in dataclasses.fields(EngineConfig)} == set(ENGINE_PARAMS)
    assert all(getattr(EngineConfig(), n) == SPECS[n].default for n in ENGINE_PARAMS)
    p = argparse.ArgumentParser()
    EngineConfig.add_arguments(p, precision="fp32")
    a = p.parse_args(["--checkpoint", str(tiny_checkpoint), "--input-scale", "0.5", "--refiners", "0",
                      "--strict-device"])
    cfg = EngineConfig.from_args(a, device="cpu")
    assert (cfg.precision, cfg.input_scale, cfg.refiners, cfg.strict_device, cfg.device) == \
        ("fp32", 0.5, 0, True, "cpu")
    engine = cfg.build()
    assert "input_scale=0.5" in engine.describe() and engine.precision_name == "fp32"
    with pytest.raises(ValueError, match="input_scale"):
        EngineConfig.from_args(p.parse_args(["--input-scale", "2.5"]))
    only = argparse.ArgumentParser()
    EngineConfig.add_arguments(only, only=("checkpoint",))
    assert EngineConfig.from_args(only.parse_args([])) == EngineConfig()


def test_engine_switch_swaps_after_warm_up_accumulates_changes_and_restores_on_failure(tiny_checkpoint):
    import threading
    from stereonet_ros.checkpoint import CheckpointError
    from stereonet_ros.engine import EngineOutOfMemory, StereoEngine
    from stereonet_ros.engine_config import EngineConfig
    from stereonet_ros.engine_switch import EngineSwitch

    class WarmUpOutOfMemory(StereoEngine):
        """A real engine that runs out of memory at the size it is warmed up for."""
        def warm_up(self, height, width, *, with_right=False):
            raise EngineOutOfMemory(f"CUDA out of memory at {width}x{height}")

    fail_next = threading.Event()

    def build(v):
        cls = WarmUpOutOfMemory if fail_next.is_set() else StereoEngine
        return cls(**{**vars(EngineConfig.from_params(v)), "device": "cpu", "precision": "fp32"})

    switched, failed = [], []
    values = {n: s.default for n, s in SPECS.items()}
    values["checkpoint"] = str(tiny_checkpoint)
    sw = EngineSwitch(values, build, on_switched=lambda e, v: switched.append(e),
                      on_failed=lambda text, restore: failed.append((text, restore)))
    first = sw.engine
    assert not sw.request({**values, "lr_check": True})            # no engine change: at once
    assert sw.values["lr_check"] and sw.engine is first
    # two changes in a row (one SetParameters call, two callbacks): both take effect
    assert sw.request({**sw.requested, "input_scale": 0.5}, (64, 96))
    assert sw.request({**sw.requested, "refiners": 0}, (64, 96))
    assert sw.wait(60)
    assert "input_scale=0.5" in sw.engine.describe() and "refiners=0" in sw.engine.describe()
    assert sw.values["refiners"] == 0 and switched[-1] is sw.engine
    with pytest.raises(CheckpointError):                          # refused: nothing changes
        sw.request({**sw.requested, "checkpoint": "/no/such.pt"})
    assert sw.requested["checkpoint"] == str(tiny_checkpoint)
    running = sw.engine
    fail_next.set()
    assert sw.request({**sw.requested, "refiners": 1}, (64, 96))
    assert sw.wait(60)
    assert sw.engine is running and sw.values["refiners"] == 0
    assert failed == [("EngineOutOfMemory: CUDA out of memory at 96x64", {"refiners": 0})]
    assert sw.requested["refiners"] == 0                          # restored


def test_newest_worker_computes_the_newest_item_and_counts_the_replaced():
    import threading
    from stereonet_ros.newest_worker import NewestWorker
    busy, release, seen, replaced = threading.Event(), threading.Event(), [], []

    def handle(item, t_put):
        seen.append(item)
        busy.set()
        release.wait(10)

    w = NewestWorker(handle, on_replaced=lambda: replaced.append(1))
    w.put(1)
    assert busy.wait(10)           # 1 is in progress
    for item in (2, 3, 4):         # 2 and 3 wait in the slot and are replaced
        w.put(item)
    release.set()
    from helpers import wait_for
    assert wait_for(lambda: seen[-1] == 4, 10)
    assert seen == [1, 4] and len(replaced) == 2
    assert w.stop(5) and w.stop(5)  # idempotent
    w.put(5)                        # after stop: never handled
    assert not wait_for(lambda: len(seen) > 2, 0.2)


def test_newest_worker_put_waiting_loses_nothing_and_keeps_the_producer_one_item_ahead():
    import threading
    from stereonet_ros.newest_worker import NewestWorker
    from helpers import wait_for
    release, seen, replaced = threading.Event(), [], []

    def handle(item, t_put):
        seen.append(item)
        release.wait(10)

    w = NewestWorker(handle, on_replaced=lambda: replaced.append(1))
    assert w.put_waiting(1)
    assert wait_for(lambda: seen == [1], 10)   # 1 in progress
    assert w.put_waiting(2)                    # the slot was free: returns at once
    done = threading.Event()
    threading.Thread(target=lambda: (w.put_waiting(3), done.set()), daemon=True).start()
    assert not done.wait(0.3)                  # 2 still waits: the producer of 3 is held
    release.set()
    assert done.wait(10) and wait_for(lambda: seen == [1, 2, 3], 10)
    assert replaced == []                      # nothing replaced, nothing lost
    release.clear()
    assert w.put_waiting(4) and wait_for(lambda: seen[-1] == 4, 10)
    assert w.put_waiting(5)                    # waits behind 4 in progress
    stopper = threading.Thread(target=lambda: w.stop(5), daemon=True)
    stopper.start()
    assert not w.put_waiting(6)                # stopped while waiting: refused, not hung
    release.set()
    stopper.join(10)
    assert 6 not in seen


def test_node_stats_keeps_the_stage_times_of_each_recent_frame():
    from stereonet_ros.stats import NodeStats
    stats = NodeStats(latency_window=2)
    assert stats.recent_frames() == []
    for i in range(3):
        stats.processed_frame({"model": 10.0 + i, "total": 20.0 + i})
    frames = stats.recent_frames()
    assert frames == [{"model": 11.0, "total": 21.0}, {"model": 12.0, "total": 22.0}]  # oldest first, bounded
    assert stats.processed == 3
    frames[0]["model"] = -1.0  # a copy: the caller's changes do not reach the stats
    assert stats.recent_frames()[0]["model"] == 11.0
    assert stats.latency()["model"][0] == pytest.approx(11.5)  # the same window as the latencies


def test_keep_large_allocations_takes_effect_on_glibc_and_is_idempotent():
    import platform
    from stereonet_ros.allocator import keep_large_allocations
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert keep_large_allocations() is expected
    assert keep_large_allocations() is expected
    big = np.ones(8 * 2 ** 20, np.uint8)   # an 8 MiB buffer allocates and frees as before
    assert int(big.sum()) == 8 * 2 ** 20


def test_cloud_due_spaces_clouds_by_image_stamp_with_jitter_tolerance_and_restarts_on_a_loop():
    from stereonet_ros.node_outputs import cloud_due
    s = 10**9
    assert cloud_due(5 * s, None, 2.0)                        # the first cloud
    assert not cloud_due(5 * s + 400_000_000, 5 * s, 2.0)     # 0.4 s < 0.5 s
    assert cloud_due(5 * s + 460_000_000, 5 * s, 2.0)         # within 10 % of the period
    assert cloud_due(4 * s, 5 * s, 2.0)                       # stamp went back: bag loop
    assert cloud_due(5 * s + 1, 5 * s, 0.0)                   # 0 = every frame


def test_engine_switch_close_waits_for_a_pending_warm_up_and_calls_nothing_after(tiny_checkpoint):
    from stereonet_ros.engine_config import EngineConfig
    from stereonet_ros.engine_switch import EngineSwitch
    values = {n: s.default for n, s in SPECS.items()}
    values.update(checkpoint=str(tiny_checkpoint), precision="fp32", device="cpu")
    called = []
    sw = EngineSwitch(values, lambda v: EngineConfig.from_params(v).build(),
                      on_switched=lambda e, v: called.append("switched"),
                      on_failed=lambda t, r: called.append("failed"))
    running = sw.engine
    assert sw.request({**sw.requested_values(), "refiners": 0}, (720, 1280))   # a warm-up of ~0.3 s
    assert sw.close(60)                     # the warm-up finished (or never started) ...
    assert called == [] and sw.engine is running   # ... and changed nothing after close
