"""End-to-end demo: synthetic bag -> the real ``stereonet_node`` process -> measured outputs.

``python -m stereonet_ros.tools.demo`` on its defaults:

1. generates (or reuses from ``<out>/cache``) a small synthetic stereo bag with exact
   ground-truth disparity and depth (``stereonet_ros.tools.synthetic`` scenes);
2. starts the node as its own process, ``python -m stereonet_ros.node --ros-args
   --params-file config/stereonet.yaml -p checkpoint:=... -p refiners:=...``;
3. replays the bag into it with restamped headers (``replay.BagPlayer``) while
   ``replay.OutputRecorder`` records disparity/depth/points2 arrivals and /diagnostics;
4. stops the node with SIGINT and writes ``<out>/report.json``, PNG figures and a short
   terminal summary: accuracy vs ground truth, output rate, latency, drops by reason;
5. shows real photographs (``demo_photos``: Middlebury's Motorcycle with ground truth, two
   OAK-D pairs): StereoNet with the node's settings, through the node's per-frame code, beside
   the project's SGBM baseline, with depth, confidence and the point cloud
   (``<out>/photo_<name>.png``; ``--no-photos`` leaves them out).

DDS: Fast DDS over UDP loopback loses large images, so the demo re-executes itself in a
private network namespace (``unshare -n``) with shared-memory/large-data transport when it
runs as root and ``unshare`` works; otherwise it sets the transport on the loopback and warns.

The defaults fit an idle 2-core CPU in ~1-2 minutes: 60 frames of 640x480 (disparities
< 96 px; a ~250 MB cached bag), the node with its default configuration (the checkpoint's
operating point and full range: a shorter search or fewer refiners costs accuracy, see the model
card; bf16 where the CPU has it), the bag played at 2 frames/s. A node slower than that (a busy CPU) drops frames, and the drops
are reported; ``--width 320 --height 240
--max-disparity 48 --node-max-disparity 64`` is 4x lighter.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import cv2
import numpy as np

from . import bag
from ..metrics import metrics_line
from .synthetic import SyntheticConfig, render_scene, to_uint8

PACKAGE_ROOT = Path(__file__).resolve().parents[2]   # the repository (stereonet_ros/tools/demo.py)
NETNS_MARK = "STEREONET_DEMO_NETNS"
INPUT_TOPICS = ("/left/camera_info", "/right/camera_info", "/left/image_rect", "/right/image_rect")


@dataclass
class SceneSpec:
    """What the synthetic demo bag holds (the cache key)."""

    frames: int = 60
    width: int = 640
    height: int = 480
    fps: float = 10.0              # recorded frame rate (stamps 1/fps apart)
    max_disparity: float = 96.0    # scene disparities in [2, max) px
    fx: float = 300.0              # px
    baseline: float = 0.12         # m
    seed: int = 0
    storage: str = "sqlite3"
    encoding: str = "rgb8"

    def key(self) -> str:
        return hashlib.sha1(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:10]


# ----------------------------------------------------------------------------- scenes

def render(seed: int, spec: SceneSpec) -> Dict[str, np.ndarray]:
    """One stereo scene (float32 RGB left/right in [0, 1], exact disparity in px)."""
    cfg = SyntheticConfig(height=spec.height, width=spec.width, max_disparity=spec.max_disparity,
                          min_disparity=2.0, noise_max=0.01)
    return render_scene(seed, cfg)


def make_demo_bag(path: Path, spec: SceneSpec, progress: bool = True) -> Path:
    """Write the synthetic bag (inputs + /gt/disparity + /gt/depth) to ``path``."""
    from tqdm import tqdm
    topics = bag.StereoTopics()
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    t0 = 1_700_000_000 * 10**9
    period = int(1e9 / spec.fps)
    with bag.BagWriter(tmp, spec.storage) as w:
        for i in tqdm(range(spec.frames), desc="demo bag", unit="frame", disable=not progress, file=sys.stderr):
            sc = render(spec.seed * 100_003 + i, spec)
            depth = np.where(sc["disp"] > 0, spec.fx * spec.baseline / np.maximum(sc["disp"], 1e-6), np.nan)
            li = bag.make_camera_info(spec.width, spec.height, spec.fx, spec.baseline)
            ri = bag.make_camera_info(spec.width, spec.height, spec.fx, spec.baseline, right=True)
            bag.write_stereo_frame(w, topics, t0 + i * period, to_uint8(sc["left"]), to_uint8(sc["right"]), spec.encoding,
                                   li, ri, gt_disparity=sc["disp"], gt_depth=depth.astype(np.float32))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)  # only a complete bag is ever reused from the cache
    return path


def cached_bag(cache: Path, spec: SceneSpec, progress: bool = True) -> Tuple[Path, bool]:
    """The demo bag for ``spec`` from the cache, generated when absent; (path, reused)."""
    path = cache / f"demo_{spec.key()}"
    if (path / "metadata.yaml").exists():
        return path, True
    cache.mkdir(parents=True, exist_ok=True)
    return make_demo_bag(path, spec, progress), False


# ----------------------------------------------------------------------------- DDS / netns

def netns_available() -> bool:
    """Root, ``unshare`` and ``ip`` present, and a network namespace can really be made."""
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def reexec_in_netns(argv: List[str]) -> None:
    """Replace this process by the demo inside a private network namespace (does not return).

    Inside, only the loopback exists: DDS discovery stays private and Fast DDS' LARGE_DATA
    transport (shared memory + TCP) carries the images without UDP fragment loss.
    """
    env = dict(os.environ, **{NETNS_MARK: "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
                              "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
           sys.executable, "-m", "stereonet_ros.tools.demo", *argv]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe("unshare", cmd, env)


def configure_transport(argv: List[str], allow_netns: bool) -> str:
    """Make DDS fit for big images; returns a description (may re-exec in a netns)."""
    if os.environ.get(NETNS_MARK) == "1":
        return "private network namespace, Fast DDS LARGE_DATA transport"
    if allow_netns and netns_available():
        reexec_in_netns(argv)
    os.environ.setdefault("FASTDDS_BUILTIN_TRANSPORTS", "LARGE_DATA")
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    msg = ("WARNING: no private network namespace (needs root and unshare); using LARGE_DATA transport on "
           "localhost: other ROS processes on this host may see the demo's topics")
    print(msg, file=sys.stderr)
    return "host network, Fast DDS LARGE_DATA transport, LOCALHOST discovery"


# ----------------------------------------------------------------------------- node process

def node_command(checkpoint: str, params_file: Path, overrides: Dict[str, Any]) -> List[str]:
    """The command line that starts the real node with the repo's parameter file."""
    cmd = [sys.executable, "-m", "stereonet_ros.node", "--ros-args", "--params-file", str(params_file)]
    for k, v in {"checkpoint": checkpoint, **overrides}.items():
        cmd += ["-p", f"{k}:={str(v).lower() if isinstance(v, bool) else v}"]
    return cmd


def start_node(cmd: List[str], log_path: Path, domain: int) -> subprocess.Popen:
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    # On a shared CPU, OpenMP threads spinning while they wait starve the node's other
    # threads (and the player); passive waiting costs nothing measurable otherwise.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    log = open(log_path, "w")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(PACKAGE_ROOT))


def stop_node(proc: subprocess.Popen, timeout: float = 20.0) -> Dict[str, Any]:
    """SIGINT (the node's clean shutdown path), then SIGTERM/SIGKILL if it hangs."""
    if proc.poll() is not None:
        return {"exit_code": proc.returncode, "clean": False, "note": "the node had already exited"}
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout)
        return {"exit_code": code, "clean": code == 0, "stop_s": time.monotonic() - t0}
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            code = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        return {"exit_code": code, "clean": False, "note": f"no exit {timeout:g} s after SIGINT"}


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ----------------------------------------------------------------------------- figures

def demo_figures(out_dir: Path, bag_path: Path, rec: Any, player: Any, gt: Dict[int, np.ndarray],
                 count: int = 3) -> List[str]:
    """Panels (left, gt, node output, error, cloud) of ``count`` received frames spread over the run.

    The cloud is rebuilt from the received disparity with the bag's camera_info (the
    same geometry functions the node uses), so the figure shows what arrived on the wire.
    """
    from .evaluate import frame_panel
    from ..geometry import depth_to_points, disparity_to_depth, geometry_from_projections
    from ..imageconv import image_to_numpy, to_rgb8
    from ..metrics import disparity_metrics
    with rec.lock:
        received = {player.stamp_map.get(s, s): (s, v) for s, v in rec.disparities.items()}
        arrival = {a.stamp: a.arrival for a in rec.arrivals if a.topic == "disparity"}
    if not received:
        return []
    wanted = sorted(received)
    pick = {wanted[int(i)] for i in np.linspace(0, len(wanted) - 1, min(count, len(wanted)))}
    written = []
    for frame in bag.read_stereo_frames(bag_path):
        if frame.stamp not in pick:
            continue
        new_stamp, (d, valid, maxd) = received[frame.stamp]
        g = gt.get(frame.stamp)
        left = to_rgb8(image_to_numpy(frame.left), frame.left.encoding)
        geom = geometry_from_projections(frame.left_info.p, frame.right_info.p, frame.left.width, frame.left.height)
        pts = depth_to_points(disparity_to_depth(d, geom, valid), geom)
        info = [f"frame {frame.index}", f"latency {(arrival.get(new_stamp, new_stamp) - new_stamp) / 1e6:.0f} ms"]
        if g is not None:
            m = disparity_metrics(d, g, max_disparity=maxd, pred_valid=valid)
            info += [f"EPE {m['epe']:.2f} px", f"bad2 {m['bad2']:.1f} %", f"density {m['density']:.1f} %"]
        panel = frame_panel(left, d, valid, maxd, g, pts, left, None, info)["panel"]
        name = out_dir / f"frame_{frame.index:04d}.png"
        cv2.imwrite(str(name), panel)
        written.append(str(name))
    return written


# ----------------------------------------------------------------------------- the run

@dataclass
class DemoOptions:
    checkpoint: str = ""
    out: Path = Path("out/demo")
    spec: SceneSpec = field(default_factory=SceneSpec)
    rate: float = 0.2              # replay speed: 10 fps recording -> 2 pairs/s
    input_scale: float = 0.0       # the node's 'input_scale' (0 = the checkpoint's operating point)
    refiners: int = -1             # the node's 'refiners' (-1 = the checkpoint's): its default configuration
    node_max_disparity: float = 0.0  # native px searched by the node (0 = the checkpoint's 192 px)
    num_threads: int = 0
    params_file: Optional[Path] = None
    startup_timeout: float = 120.0
    settle_s: float = 5.0
    figures: int = 3
    progress: bool = True
    photos: bool = True            # step 5: real photographs, StereoNet beside SGBM


def default_params_file() -> Path:
    """config/stereonet.yaml of the source tree, else of the installed package share."""
    here = PACKAGE_ROOT / "config" / "stereonet.yaml"
    if here.exists():
        return here
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory("stereonet_ros")) / "config" / "stereonet.yaml"
    except Exception:
        return here


def checkpoint_info(path: str) -> Dict[str, Any]:
    from ..checkpoint import load_checkpoint
    ck = load_checkpoint(path or None)
    return {"path": str(ck.path), "info": dict(ck.info), "random_weights": ck.random_weights,
            "refiners": ck.config.num_refiners, "operating_point": ck.inference}


def run_demo(o: DemoOptions, transport: str = "") -> Dict[str, Any]:
    """The whole demo; returns the report (also written to ``o.out/report.json``)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from .replay import BagPlayer, OutputRecorder, Spinner, live_report, load_gt
    o.out.mkdir(parents=True, exist_ok=True)
    ck = checkpoint_info(o.checkpoint)
    run = ck["operating_point"].resolve(o.input_scale, o.refiners)  # the settings the node resolves
    random_weights = ck["random_weights"]
    if random_weights:
        banner("THE CHECKPOINT HOLDS RANDOM WEIGHTS: the node runs, but its disparities are meaningless")
    domain = int(os.environ.get("STEREONET_DEMO_DOMAIN", random.randint(1, 100)))
    params_file = o.params_file or default_params_file()
    cmd = node_command(ck["path"], params_file, {"input_scale": o.input_scale, "refiners": o.refiners,
                                                 "num_threads": o.num_threads,
                                                 "max_disparity": float(o.node_max_disparity),
                                                 "diagnostics_period": 0.5})
    t_launch = time.monotonic()
    proc = start_node(cmd, o.out / "node.log", domain)  # loads its model while the bag is prepared
    rclpy.init(domain_id=domain)
    node = rclpy.create_node("stereonet_demo")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = Spinner(executor)
    stop: Dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        bag_path, reused = cached_bag(o.out / "cache", o.spec, o.progress)
        gen_s = time.monotonic() - t0
        gt = load_gt(bag_path, "/gt/disparity")
        player = BagPlayer(node, bag_path, rate=o.rate, restamp=True, topics=list(INPUT_TOPICS), keep_log=True)
        rec = OutputRecorder(node)
        spinner.thread.start()
        t_start = t_launch
        # The node creates its subscriptions after loading the model: matched = ready.
        while not player.wait_for_subscribers(list(INPUT_TOPICS), 0.5):
            if proc.poll() is not None:
                raise RuntimeError(f"the node exited with code {proc.returncode} before subscribing:\n"
                                   + log_tail(o.out / "node.log"))
            if time.monotonic() - t_start > o.startup_timeout:
                raise RuntimeError(f"the node did not subscribe within {o.startup_timeout:g} s:\n"
                                   + log_tail(o.out / "node.log"))
        startup_s = time.monotonic() - t_start
        time.sleep(0.5)  # let the node's publishers match the recorder too
        stats = player.play()
        rec.wait_settled(stats.published.get("/left/image_rect", 0), o.settle_s, timeout=60)
        live = live_report(player, rec, "/left/image_rect", gt)
    finally:
        stop = stop_node(proc)
        spinner.close()
        node.destroy_node()
        rclpy.try_shutdown()
    figures = demo_figures(o.out, bag_path, rec, player, gt, o.figures)
    photos = run_photos(o, ck["path"]) if o.photos else []
    report = {
        "checkpoint": ck["path"], "checkpoint_info": ck["info"], "random_weights": random_weights,
        "transport": transport, "node_command": cmd, "node_stop": stop,
        "bag": {"path": str(bag_path), "reused_from_cache": reused, "generate_s": gen_s, **asdict(o.spec)},
        "replay_rate": o.rate, "input_pair_rate_hz": o.spec.fps * o.rate,
        # what the node ran: 0 / -1 resolve to the checkpoint's operating point
        "input_scale": run.input_scale, "refiners": run.refiners_of(ck["refiners"]),
        "node_max_disparity": o.node_max_disparity,
        "node_env": {"OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")},
        "node_startup_s": startup_s, "figures": figures, **live,
        "photos": photos,
    }
    (o.out / "report.json").write_text(json.dumps(report, indent=2, default=float))
    return report


def run_photos(o: DemoOptions, checkpoint: str) -> List[Dict[str, Any]]:
    """Step 5: the real pairs of ``demo_photos`` through an engine with the node's settings
    (same checkpoint, refiners, max_disparity, input_scale), in this process once the node
    has stopped, so the two never share the CPU."""
    from .demo_photos import run
    from ..engine import StereoEngine
    from ..engine_config import default_threads
    engine = StereoEngine(checkpoint=checkpoint, device="auto", input_scale=o.input_scale,
                          max_disparity=float(o.node_max_disparity), refiners=o.refiners,
                          num_threads=o.num_threads or default_threads())
    return run(engine, o.out)


def banner(text: str) -> None:
    line = "!" * min(100, len(text) + 8)
    print(f"\n{line}\n!!! {text}\n{line}\n", file=sys.stderr)


def summary_text(r: Dict[str, Any]) -> str:
    m, lat = r["metrics"], r["latency_ms"]
    lines = [f"stereonet demo: {r['pairs_published']} pairs at {r['input_pair_rate_hz']:.2f} Hz "
             f"({r['bag']['width']}x{r['bag']['height']}, input_scale {r['input_scale']:g}, "
             f"refiners {r['refiners']}) into the node process",
             f"  output: {r['disparities_received']} disparities, {r['output_rate_hz']:.2f} Hz; "
             f"latency (input publish -> output arrival) p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms",
             f"  dropped: {r['dropped']} of {r['pairs_published']} pairs; node reasons: "
             f"{r['node_drops_by_reason'] or 'none'}"]
    lines.append("  " + metrics_line(m))
    lines.append(f"  node stopped with SIGINT: exit code {r['node_stop'].get('exit_code')}"
                 f"{'' if r['node_stop'].get('clean') else ' (NOT clean: ' + str(r['node_stop'].get('note', '')) + ')'}")
    if r.get("photos"):
        from .demo_photos import summary_lines
        lines += summary_lines(r["photos"])
    if r["random_weights"]:
        lines.append("  !!! RANDOM WEIGHTS: the accuracy above is that of an untrained network !!!")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    d, s = DemoOptions(), SceneSpec()
    p = argparse.ArgumentParser(prog="python -m stereonet_ros.tools.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default="", help="'' = the bundled default")
    p.add_argument("--out", default=str(d.out))
    p.add_argument("--frames", type=int, default=s.frames)
    p.add_argument("--width", type=int, default=s.width)
    p.add_argument("--height", type=int, default=s.height)
    p.add_argument("--fps", type=float, default=s.fps, help="recorded frame rate of the synthetic bag")
    p.add_argument("--max-disparity", type=float, default=s.max_disparity, help="scene disparity range, px")
    p.add_argument("--seed", type=int, default=s.seed)
    p.add_argument("--storage", default=s.storage, choices=bag.STORAGES)
    p.add_argument("--rate", type=float, default=d.rate, help="replay speed factor")
    p.add_argument("--input-scale", type=float, default=d.input_scale,
                   help="the node's input_scale parameter (0 = the checkpoint's operating point)")
    p.add_argument("--refiners", type=int, default=d.refiners,
                   help="the node's refiners parameter (-1 = the checkpoint's operating point)")
    p.add_argument("--node-max-disparity", type=float, default=d.node_max_disparity,
                   help="the node's max_disparity parameter, native px (0 = the checkpoint's range)")
    p.add_argument("--num-threads", type=int, default=d.num_threads)
    p.add_argument("--params-file", default="")
    p.add_argument("--settle", type=float, default=d.settle_s)
    p.add_argument("--figures", type=int, default=d.figures)
    p.add_argument("--bag-only", action="store_true",
                   help="only generate (or find) the cached synthetic bag and print its path")
    p.add_argument("--no-netns", action="store_true", help="do not re-execute in a private network namespace")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-photos", action="store_true", help="leave out step 5, the real photographs")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = build_parser().parse_args(argv)
    spec = SceneSpec(a.frames, a.width, a.height, a.fps, a.max_disparity, seed=a.seed, storage=a.storage)
    if a.bag_only:  # e.g. for stereonet-eval / stereonet-replay by hand
        path, reused = cached_bag(Path(a.out) / "cache", spec, not a.no_progress)
        print(f"{path}{' (cached)' if reused else ''}")
        return 0
    transport = configure_transport(argv, not a.no_netns)
    o = DemoOptions(a.checkpoint, Path(a.out), spec, a.rate, a.input_scale, a.refiners, a.node_max_disparity,
                    a.num_threads, Path(a.params_file) if a.params_file else None, settle_s=a.settle, figures=a.figures,
                    progress=not a.no_progress, photos=not a.no_photos)
    from ..checkpoint import CheckpointError
    try:
        report = run_demo(o, transport)
    except CheckpointError as exc:
        print(f"demo: cannot load the checkpoint: {exc}\n(pass --checkpoint PATH)", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    print(summary_text(report))
    print(f"  report: {o.out / 'report.json'}; figures: {', '.join(report['figures']) or 'none'}"
          + (f"; photos: {', '.join(p['figure'] for p in report['photos'])}" if report.get("photos") else ""))
    if report["random_weights"]:
        banner("RANDOM WEIGHTS: this run checks the plumbing, not the model")
    return 0 if report["disparities_received"] else 1


if __name__ == "__main__":
    sys.exit(main())
