"""Stereo frames <-> ROS bags with the ``rosbags`` library (no ROS runtime needed).

- ROS 2 bags are written and read in both storages, ``sqlite3`` and ``mcap``.
- ROS 1 ``.bag`` files are read (``rosbags.highlevel.AnyReader``); their CameraInfo fields
  (``D K R P``) are exposed under the ROS 2 names (``d k r p``) so ``pipeline.process_pair``
  takes them unchanged.
- Camera images may be sensor_msgs/Image or CompressedImage (JPEG or PNG, e.g. a recording
  of ``image_rect/compressed``): the reader decodes a paired CompressedImage with the node's
  codec (``imageconv.decode_compressed``) into a sensor_msgs/Image, so every consumer sees
  Images. A requested image topic that is missing is looked for as ``<topic>/compressed``.

Deserialized messages are rosbags dataclasses with the ROS 2 field names (``msg.p``,
``msg.header.stamp.sec/nanosec``, ``msg.data`` as a numpy uint8 array), which
``pipeline.process_pair`` accepts directly. Messages to write are built by the node's codec
(``messages``) with rosbags' classes (``ROSBAGS``), so a bag holds what the node publishes.

Ground-truth convention: a ``32FC1`` Image of DisparityImage-style disparity ``d`` in pixels
of the left image (``x_l - x_r - (cx_l - cx_r)``), non-finite = unknown; ``16UC1`` is read
KITTI-style (value / 256, 0 = unknown). Ground-truth depth is ``32FC1`` metres.
"""
from __future__ import annotations

import functools
import logging
import struct
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from .. import messages
# The codec's names, used here and by the bag tools' callers as ``bag.<name>``.
from ..messages import (CAMERA_INFO, CLOUD, COMPRESSED_IMAGE, DISPARITY, IMAGE,  # noqa: F401
                       cloud_to_numpy, stamp_ns)

log = logging.getLogger("stereonet_ros.tools.bag")

STORAGES = ("sqlite3", "mcap")
#: Types a camera image topic may have.
CAMERA_IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
DIAGNOSTICS = "diagnostic_msgs/msg/DiagnosticArray"


class BagError(RuntimeError):
    """A bag that cannot be read as requested (missing topics, wrong types, unreadable)."""


@functools.lru_cache(maxsize=1)
def typestore() -> Any:
    """The rosbags typestore of the newest ROS 2 distro this rosbags knows.

    Kilted first (the rclpy of this package), then older ones: sensor_msgs, stereo_msgs and
    diagnostic_msgs have the same layout in every ROS 2 distro since Humble.
    """
    from rosbags.typesys import Stores, get_typestore
    for name in ("ROS2_KILTED", "ROS2_JAZZY", "ROS2_HUMBLE"):
        if hasattr(Stores, name):
            store = get_typestore(getattr(Stores, name))
            if DISPARITY in store.types and DIAGNOSTICS in store.types:
                return store
    raise BagError("this rosbags version has no ROS 2 typestore with stereo_msgs and diagnostic_msgs")


def _t(name: str) -> Any:
    return typestore().types[name]


# ----------------------------------------------------------------------------- messages
# Built by the one codec (``messages``) with rosbags' classes; these keep the bag tools'
# (stamp ns, frame_id) call style.

def _rosbags_uint8(a: np.ndarray) -> np.ndarray:
    # rosbags serializes numpy arrays only; a view of the contiguous array, no copy
    return a.view(np.uint8).reshape(-1)


#: rosbags' typestore dataclasses (``typestore()``) for the codec in ``messages``.
ROSBAGS = messages.MessageTypes(cls=_t, keyword_init=True, uint8=_rosbags_uint8,
                                zeroed=lambda n: np.zeros(n, np.uint8),
                                float64=lambda a: np.asarray(a, dtype=np.float64))


def _cdr_endian(raw: bytes | memoryview) -> str:
    # Encapsulation header: 0x00 0x00 = CDR big endian, 0x00 0x01 = little endian (PL_ too).
    return "<" if raw[1] & 1 else ">"


def cdr_stamp(raw: bytes | memoryview) -> int:
    """header.stamp (ns) of a CDR message whose first field is std_msgs/Header, without
    deserializing it: sec (int32) and nanosec (uint32) follow the 4-byte encapsulation header."""
    sec, nsec = struct.unpack_from(_cdr_endian(raw) + "iI", raw, 4)
    return sec * 1_000_000_000 + nsec


def make_header(stamp: int, frame_id: str) -> Any:
    """std_msgs/Header (rosbags) for ``stamp`` in nanoseconds."""
    return messages.make_header(stamp, frame_id, ROSBAGS)


def make_image(arr: np.ndarray, encoding: str, stamp: int, frame_id: str) -> Any:
    """sensor_msgs/Image (rosbags) holding ``arr`` little-endian, rows unpadded (a view of
    ``arr`` when it is contiguous in the encoding's dtype).

    An encoding the codec does not know is written as raw bytes of ``arr`` (tests of
    malformed input use it); its ``step`` is then the byte length of one row.
    """
    return messages.make_image(make_header(stamp, frame_id), arr, encoding, ROSBAGS, strict=False)


def make_compressed_image(arr: np.ndarray, encoding: str, stamp: int, frame_id: str, codec: str = "png",
                          quality: int = 95) -> Any:
    """sensor_msgs/CompressedImage (rosbags): ``messages.make_compressed_image``."""
    return messages.make_compressed_image(make_header(stamp, frame_id), arr, encoding, codec, quality, ROSBAGS)


def make_camera_info(width: int, height: int, fx: float, baseline: float, cx: Optional[float] = None,
                     cy: Optional[float] = None, fy: Optional[float] = None, right: bool = False,
                     cx_right: Optional[float] = None, stamp: int = 0, frame_id: str = "left_optical") -> Any:
    """Rectified sensor_msgs/CameraInfo (rosbags) of one eye: ``messages.make_camera_info``
    (``baseline`` m; px otherwise)."""
    return messages.make_camera_info(make_header(stamp, frame_id), width, height, fx, baseline, cx, cy, fy,
                                     right, cx_right, ROSBAGS)


def make_disparity(disp: np.ndarray, stamp: int, frame_id: str, f: float, t: float,
                   min_disparity: float, max_disparity: float, delta_d: float,
                   valid_window: Optional[Tuple[int, int, int, int]] = None) -> Any:
    """stereo_msgs/DisparityImage (rosbags): ``messages.make_disparity``, the node's message;
    ``valid_window`` (x, y, w, h) px, None = the whole image."""
    return messages.make_disparity(make_header(stamp, frame_id), disp, f, t, min_disparity, max_disparity,
                                   delta_d, valid_window, ROSBAGS)


def make_cloud(points: np.ndarray, stamp: int, frame_id: str, rgb8: Optional[np.ndarray] = None) -> Any:
    """Organized sensor_msgs/PointCloud2 (rosbags): float32 x y z [rgb] m, NaN = invalid;
    ``messages.make_cloud``, the node's layout, so ``cloud_to_numpy`` decodes both."""
    return messages.make_cloud(make_header(stamp, frame_id), points, rgb8, True, ROSBAGS)


def gt_disparity_from_image(msg: Any) -> np.ndarray:
    """Ground-truth disparity (H, W) float32 pixels, NaN = unknown, from a 32FC1/16UC1 Image.

    Raises ``ValueError`` for another encoding or an inconsistent size.
    """
    from ..imageconv import ImageFormatError, image_to_numpy
    if msg.encoding not in ("32FC1", "16UC1"):
        raise ValueError(f"ground truth encoding '{msg.encoding}' is not 32FC1 (or KITTI-style 16UC1)")
    try:
        arr = image_to_numpy(msg)
    except ImageFormatError as exc:
        raise ValueError(f"ground truth image: {exc}") from exc
    if msg.encoding == "16UC1":  # KITTI: disparity * 256, 0 = no measurement
        return np.where(arr > 0, arr.astype(np.float32) / 256.0, np.float32(np.nan))
    return np.array(arr, dtype=np.float32)


#: Message types a ground-truth topic may have: disparity as a 32FC1 (or KITTI-style 16UC1)
#: Image or as the DisparityImage this package writes; depth as a 32FC1 Image (metres).
GT_DISPARITY_TYPES = (IMAGE, DISPARITY)
GT_DEPTH_TYPES = (IMAGE,)


def gt_disparity_from_disparity_image(msg: Any) -> np.ndarray:
    """Ground-truth disparity (H, W) float32 px, NaN = unknown, from a stereo_msgs/DisparityImage.

    The message's own rules say what is unknown: a value below ``min_disparity`` or not
    finite, and pixels outside a non-empty ``valid_window`` (an all-zero window means the
    whole image, as for any RegionOfInterest). Its d = x_l - x_r - (cx_l - cx_r) is the
    convention the node publishes and the evaluation compares in.
    """
    if msg.image.encoding != "32FC1":  # the message defines a float image; no KITTI scaling here
        raise ValueError(f"DisparityImage image encoding '{msg.image.encoding}' is not 32FC1")
    d = gt_disparity_from_image(msg.image)
    out = np.where(np.isfinite(d) & (d >= np.float32(msg.min_disparity)), d, np.float32(np.nan)).astype(np.float32)
    win = msg.valid_window
    if win.width and win.height:
        inside = np.zeros(out.shape, bool)
        inside[win.y_offset:win.y_offset + win.height, win.x_offset:win.x_offset + win.width] = True
        out[~inside] = np.nan
    return out


def gt_disparity_from_message(msg: Any) -> np.ndarray:
    """Ground-truth disparity of an Image or a DisparityImage (``GT_DISPARITY_TYPES``)."""
    if hasattr(msg, "min_disparity") and hasattr(msg, "image"):
        return gt_disparity_from_disparity_image(msg)
    return gt_disparity_from_image(msg)


def check_gt_topic_types(have: Dict[str, str], disparity_topic: Optional[str],
                         depth_topic: Optional[str]) -> None:
    """BagError naming a ground-truth topic whose type cannot hold ground truth (and its type),
    instead of a failure deep inside decoding or a silently skipped ground truth."""
    for topic, types, what in ((disparity_topic, GT_DISPARITY_TYPES, "disparity"),
                               (depth_topic, GT_DEPTH_TYPES, "depth")):
        if topic and topic in have and have[topic] not in types:
            raise BagError(f"ground-truth {what} topic '{topic}' is {have[topic]}; it must be "
                           + " or ".join(types) + (" (32FC1 px or 16UC1 px*256)" if what == "disparity"
                                                   else " (32FC1 metres)"))


# ----------------------------------------------------------------------------- writing

class BagWriter:
    """Writes ROS 2 bags (``storage`` 'sqlite3' or 'mcap'); a context manager.

    Topics are added on first use with the message's type. ``write`` takes a rosbags
    message and the receive time in nanoseconds (the bag's log time, used for replay).
    """

    def __init__(self, path: str | Path, storage: str = "sqlite3", version: int = 8) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        if storage not in STORAGES:
            raise ValueError(f"storage '{storage}' is not one of {', '.join(STORAGES)}")
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"'{self.path}' exists already; a bag is never overwritten")
        # version 8 is what Humble..Kilted's rosbag2 reads; 9 only adds fields they ignore.
        self._writer = Writer(self.path, version=version,
                              storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        self._conns: Dict[str, Any] = {}
        self.counts: Counter = Counter()

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None  # type: ignore[assignment]

    def write(self, topic: str, msg: Any, time_ns: int) -> None:
        """Serialize ``msg`` (its type from its class) and store it at log time ``time_ns``."""
        msgtype = msg.__msgtype__
        self.write_raw(topic, msgtype, typestore().serialize_cdr(msg, msgtype), time_ns)

    def write_raw(self, topic: str, msgtype: str, data: bytes, time_ns: int) -> None:
        """Store an already CDR-serialized message (e.g. as received by rclpy) of ``msgtype``."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=typestore())
        elif conn.msgtype != msgtype:
            raise BagError(f"topic '{topic}' is {conn.msgtype}, cannot write a {msgtype}")
        self._writer.write(conn, int(time_ns), data)
        self.counts[topic] += 1


@dataclass
class StereoTopics:
    """Topic names of a stereo recording (ground truth topics are optional)."""

    left: str = "/left/image_rect"
    right: str = "/right/image_rect"
    left_info: str = "/left/camera_info"
    right_info: str = "/right/camera_info"
    gt_disparity: Optional[str] = "/gt/disparity"
    gt_depth: Optional[str] = "/gt/depth"

    @property
    def required(self) -> Tuple[str, str, str, str]:
        return (self.left, self.right, self.left_info, self.right_info)


def write_stereo_frame(writer: BagWriter, topics: StereoTopics, stamp: int, left: np.ndarray,
                       right: np.ndarray, encoding: str, left_info: Any, right_info: Any,
                       gt_disparity: Optional[np.ndarray] = None, gt_depth: Optional[np.ndarray] = None,
                       frame_id: str = "left_optical", right_frame_id: str = "right_optical",
                       codec: Optional[str] = None) -> None:
    """Write one stereo frame, every message stamped ``stamp`` ns (= its log time).

    The camera_infos are restamped to ``stamp``. Ground truth goes to the gt topics when given.
    ``codec`` 'png' or 'jpeg': the images are CompressedImage on ``<image topic>/compressed``
    (image_transport's naming) instead of Image on the image topics.
    """
    left_info.header = make_header(stamp, frame_id)
    right_info.header = make_header(stamp, right_frame_id)
    writer.write(topics.left_info, left_info, stamp)
    writer.write(topics.right_info, right_info, stamp)
    if gt_disparity is not None and topics.gt_disparity:
        writer.write(topics.gt_disparity, make_image(gt_disparity.astype(np.float32), "32FC1", stamp, frame_id), stamp)
    if gt_depth is not None and topics.gt_depth:
        writer.write(topics.gt_depth, make_image(gt_depth.astype(np.float32), "32FC1", stamp, frame_id), stamp)
    if codec:
        writer.write(f"{topics.left}/compressed", make_compressed_image(left, encoding, stamp, frame_id, codec), stamp)
        writer.write(f"{topics.right}/compressed",
                     make_compressed_image(right, encoding, stamp, right_frame_id, codec), stamp)
        return
    writer.write(topics.left, make_image(left, encoding, stamp, frame_id), stamp)
    writer.write(topics.right, make_image(right, encoding, stamp, right_frame_id), stamp)


# ----------------------------------------------------------------------------- reading

@dataclass
class StereoFrame:
    """One left/right pair of a bag with the camera_infos and ground truth that go with it."""

    index: int                   # 0-based pair index in stamp order of completion
    stamp: int                   # header stamp, ns
    left: Any                    # sensor_msgs/Image (rosbags)
    right: Any
    left_info: Any               # sensor_msgs/CameraInfo (ROS 2 field names) or None
    right_info: Any
    gt_disparity: Optional[np.ndarray] = None   # (H, W) float32 px, NaN unknown
    gt_depth: Optional[np.ndarray] = None       # (H, W) float32 m, NaN unknown
    problems: List[str] = field(default_factory=list)  # e.g. unreadable ground truth


@dataclass
class PairingReport:
    """What ``read_stereo_frames`` saw; complete once the iterator is exhausted."""

    topics_in_bag: Dict[str, str] = field(default_factory=dict)   # topic -> type
    left_images: int = 0
    right_images: int = 0
    pairs: int = 0
    unpaired_left: int = 0
    unpaired_right: int = 0
    missing_camera_info: int = 0   # pairs with no camera_info on a side
    gt_frames: int = 0
    gt_problems: int = 0
    image_topics: Tuple[str, str] = ("", "")   # (left, right) topics read, after the /compressed lookup
    compressed_images: int = 0     # CompressedImage messages of paired frames decoded
    undecodable_images: int = 0    # ... that did not decode (the frame keeps them; see its problems)

    def warnings(self) -> List[str]:
        out = []
        if self.left_images != self.right_images or self.unpaired_left or self.unpaired_right:
            out.append(f"left/right mismatch: {self.left_images} left and {self.right_images} right images, "
                       f"{self.pairs} pairs; {self.unpaired_left} left and {self.unpaired_right} right "
                       "images without a partner of the same stamp were skipped")
        if self.missing_camera_info:
            out.append(f"{self.missing_camera_info} pair(s) without a camera_info on one side")
        if self.undecodable_images:
            out.append(f"{self.undecodable_images} compressed image(s) did not decode (their frames fail)")
        return out

    def to_dict(self) -> Dict[str, Any]:
        d = dict(self.__dict__)
        d["warnings"] = self.warnings()
        return d


class _Ros1CameraInfo(SimpleNamespace):
    """A ROS 1 CameraInfo seen with the ROS 2 field names."""


def _ros2_camera_info(msg: Any) -> Any:
    if hasattr(msg, "p"):
        return msg
    return _Ros1CameraInfo(header=msg.header, height=msg.height, width=msg.width,
                           distortion_model=msg.distortion_model, d=msg.D, k=msg.K, r=msg.R, p=msg.P,
                           binning_x=msg.binning_x, binning_y=msg.binning_y, roi=msg.roi)


def open_bag(path: str | Path) -> Any:
    """An opened ``AnyReader`` for a ROS 2 bag folder/file or a ROS 1 ``.bag``."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    p = Path(path)
    if not p.exists():
        raise BagError(f"bag '{p}' does not exist")
    if p.is_file() and p.suffix in (".db3", ".mcap"):
        p = p.parent  # a ROS 2 bag is its folder (metadata.yaml + storage files)
    try:
        reader = AnyReader([p], default_typestore=typestore())
        reader.open()
    except (AnyReaderError, Exception) as exc:
        raise BagError(f"cannot open bag '{path}': {exc}") from exc
    return reader


def bag_topics(reader: Any) -> Dict[str, str]:
    """topic -> message type of an opened reader."""
    return {c.topic: c.msgtype for c in reader.connections}


def resolve_image_topics(have: Dict[str, str], topics: StereoTopics) -> StereoTopics:
    """``topics`` with a missing left/right image topic replaced by ``<topic>/compressed`` when
    the bag has that as a CompressedImage (a recording of image_transport's compressed topic)."""
    import dataclasses
    change = {}
    for side in ("left", "right"):
        t = getattr(topics, side)
        if t not in have and have.get(f"{t}/compressed") == COMPRESSED_IMAGE:
            change[side] = f"{t}/compressed"
    return dataclasses.replace(topics, **change) if change else topics


def _check_topics(have: Dict[str, str], topics: StereoTopics) -> None:
    wanted = {topics.left: CAMERA_IMAGE_TYPES, topics.right: CAMERA_IMAGE_TYPES,
              topics.left_info: (CAMERA_INFO,), topics.right_info: (CAMERA_INFO,)}
    missing = [t for t in wanted if t not in have]
    wrong = [f"{t} is {have[t]}, expected {' or '.join(ty)}" for t, ty in wanted.items()
             if t in have and have[t] not in ty]
    if missing or wrong:
        listing = "\n".join(f"  {t}  [{ty}]" for t, ty in sorted(have.items())) or "  (none)"
        problem = (f"requested topic(s) missing: {', '.join(missing)}" if missing else "") + \
                  ("; " if missing and wrong else "") + "; ".join(wrong)
        raise BagError(f"{problem}\nthe bag has these topics:\n{listing}")


def _load_infos(reader: Any, conns: Dict[str, List[Any]], topic: str) -> List[Tuple[int, Any]]:
    """All camera_infos of a topic as (stamp ns, message) sorted by stamp."""
    out = []
    for conn, _t_ns, raw in reader.messages(connections=conns.get(topic, [])):
        msg = _ros2_camera_info(reader.deserialize(raw, conn.msgtype))
        out.append((stamp_ns(msg), msg))
    out.sort(key=lambda x: x[0])
    return out


def _info_at(infos: List[Tuple[int, Any]], stamp: int) -> Any:
    """The newest camera_info stamped at or before ``stamp`` (else the first one, or None)."""
    if not infos:
        return None
    stamps = [s for s, _ in infos]
    i = int(np.searchsorted(stamps, stamp, side="right")) - 1
    return infos[max(i, 0)][1]


def read_stereo_frames(path: str | Path, topics: Optional[StereoTopics] = None,
                       report: Optional[PairingReport] = None, queue_size: int = 64,
                       limit: Optional[int] = None) -> Iterator[StereoFrame]:
    """Iterate the stereo pairs of a bag: left/right paired by *exact* header stamp.

    Each pair carries the latest camera_info per side stamped at or before it (camera_infos
    are loaded first, so their order in the bag does not matter) and the ground truth with
    the same stamp when the gt topics exist. Raises ``BagError`` listing the bag's topics
    when a required one is missing. Images without a partner are counted in ``report``
    (``unpaired_left/right``); up to ``queue_size`` per side wait for one, so memory stays
    bounded when a side is missing altogether. Unreadable ground truth is noted in the
    frame's ``problems`` and the frame is still yielded.
    """
    topics = topics or StereoTopics()
    report = report if report is not None else PairingReport()
    reader = open_bag(path)
    try:
        have = bag_topics(reader)
        report.topics_in_bag = dict(have)
        topics = resolve_image_topics(have, topics)
        report.image_topics = (topics.left, topics.right)
        _check_topics(have, topics)
        check_gt_topic_types(have, topics.gt_disparity, topics.gt_depth)
        conns: Dict[str, List[Any]] = {}
        for c in reader.connections:
            conns.setdefault(c.topic, []).append(c)
        infos = {"left": _load_infos(reader, conns, topics.left_info),
                 "right": _load_infos(reader, conns, topics.right_info)}
        gt_topics = {k: t for k, t in (("disp", topics.gt_disparity), ("depth", topics.gt_depth))
                     if t and t in have}
        # Pass 1 over gt: which stamps have ground truth (so a pair waits for its gt).
        gt_stamps: Dict[str, set] = {k: set() for k in gt_topics}
        for kind, t in gt_topics.items():
            for conn, _t_ns, raw in reader.messages(connections=conns[t]):
                # ROS 2: read the stamp from the CDR bytes (no need to decode a whole image)
                gt_stamps[kind].add(cdr_stamp(raw) if reader.is2 else stamp_ns(reader.deserialize(raw, conn.msgtype)))
        yield from _pair_stream(reader, conns, topics, gt_topics, gt_stamps, infos, report, queue_size, limit)
    finally:
        reader.close()


def _pair_stream(reader: Any, conns: Dict[str, List[Any]], topics: StereoTopics, gt_topics: Dict[str, str],
                 gt_stamps: Dict[str, set], infos: Dict[str, List[Tuple[int, Any]]], report: PairingReport,
                 queue_size: int, limit: Optional[int]) -> Iterator[StereoFrame]:
    role = {topics.left: "left", topics.right: "right"}
    role.update({t: k for k, t in gt_topics.items()})
    selected = [c for t in role for c in conns.get(t, [])]
    pending: Dict[str, "OrderedDict[int, Any]"] = {k: OrderedDict() for k in ("left", "right", "disp", "depth")}
    emitted = 0

    def complete(stamp: int) -> bool:
        if stamp not in pending["left"] or stamp not in pending["right"]:
            return False
        return all(stamp in pending[k] for k in gt_topics if stamp in gt_stamps[k])

    for conn, _t_ns, raw in reader.messages(connections=selected):
        kind = role[conn.topic]
        msg = reader.deserialize(raw, conn.msgtype)
        s = stamp_ns(msg)
        if kind == "left":
            report.left_images += 1
        elif kind == "right":
            report.right_images += 1
        q = pending[kind]
        q[s] = msg
        if len(q) > queue_size:  # oldest can no longer pair: count it and forget it
            q.popitem(last=False)
            if kind in ("left", "right"):
                setattr(report, f"unpaired_{kind}", getattr(report, f"unpaired_{kind}") + 1)
        if not complete(s):
            continue
        frame = _make_frame(emitted, s, pending, infos, report)
        emitted += 1
        yield frame
        if limit is not None and emitted >= limit:
            return
    report.unpaired_left += len(pending["left"])
    report.unpaired_right += len(pending["right"])


def _make_frame(index: int, s: int, pending: Dict[str, "OrderedDict[int, Any]"],
                infos: Dict[str, List[Tuple[int, Any]]], report: PairingReport) -> StereoFrame:
    problems: List[str] = []
    # Decoded only once paired: the queues hold the small compressed messages.
    left = _decompressed(pending["left"].pop(s), "left", report, problems)
    right = _decompressed(pending["right"].pop(s), "right", report, problems)
    frame = StereoFrame(index, s, left, right, _info_at(infos["left"], s), _info_at(infos["right"], s),
                        problems=problems)
    report.pairs += 1
    if frame.left_info is None or frame.right_info is None:
        report.missing_camera_info += 1
    if s in pending["disp"]:
        try:
            frame.gt_disparity = gt_disparity_from_message(pending["disp"].pop(s))
        except ValueError as exc:
            frame.problems.append(str(exc))
            report.gt_problems += 1
    if s in pending["depth"]:
        m = pending["depth"].pop(s)
        if m.encoding == "32FC1":
            from ..imageconv import image_to_numpy
            frame.gt_depth = np.array(image_to_numpy(m), dtype=np.float32)
        else:
            frame.problems.append(f"ground truth depth encoding '{m.encoding}' is not 32FC1")
            report.gt_problems += 1
    if frame.gt_disparity is not None or frame.gt_depth is not None:
        report.gt_frames += 1
    return frame


def _decompressed(msg: Any, side: str, report: PairingReport, problems: List[str]) -> Any:
    """A CompressedImage as a (rosbags) sensor_msgs/Image; an Image unchanged. One that does
    not decode stays compressed and is noted in ``problems``: ``pipeline.process_pair`` then
    rejects the frame with the node's reason, as the node would drop it."""
    from ..imageconv import ImageFormatError, decode_compressed, is_compressed
    if not is_compressed(msg):
        return msg
    report.compressed_images += 1
    try:
        d = decode_compressed(msg)
    except ImageFormatError as exc:
        report.undecodable_images += 1
        problems.append(f"{side} compressed image: {exc}")
        return msg
    return ROSBAGS.new(IMAGE, header=msg.header, height=d.height, width=d.width, encoding=d.encoding,
                       is_bigendian=0, step=d.step, data=d.data)


def read_messages(path: str | Path, topics: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, int, Any]]:
    """(topic, log time ns, deserialized message) of a bag in log-time order (tests, tools)."""
    reader = open_bag(path)
    try:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        if not conns:  # rosbags reads *every* connection when given none
            return
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, t_ns, reader.deserialize(raw, conn.msgtype)
    finally:
        reader.close()
