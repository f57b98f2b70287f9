"""A pip-only rosbag2 player on rclpy: ``dima bag play BAG`` where ``ros2 bag play`` is not installable.

    dima bag play bags/scene-0061 [--rate 2] [--loop] [--start-paused] [--topics /CAM_FRONT/image_rect_compressed ...]
    python -m dima_ros.bag_player bags/scene-0061 ...

What it does, like ``ros2 bag play --clock``:

- reads the bag with ``rosbags`` (MCAP or SQLite3) in timestamp order and publishes every message's *serialised CDR
  bytes* as recorded: ``rclpy.Publisher.publish`` accepts ``bytes`` (``publish_raw``), so there is no deserialise /
  convert / re-serialise round trip and what subscribers receive is byte-for-byte what the bag holds. A publisher
  still needs the message class for its type support, so a topic whose type does not import here (e.g.
  ``tf2_msgs`` in the pip-only environment, which PyPI does not ship) is skipped with a warning;
- honours the recorded timestamps, scaled by ``--rate`` (wall duration = bag duration / rate);
- publishes ``/clock`` (rosgraph_msgs/Clock): the bag time of each message just before it goes out, and the
  interpolated bag time at ``--clock-hz`` while it waits, so ``use_sim_time`` nodes see time advance smoothly and
  never see a message stamped ahead of the clock;
- offers each topic with the QoS recorded in the bag (``offered_qos_profiles``, e.g. transient-local for
  ``/tf_static`` so late subscribers still get the calibration), reliable/volatile depth 10 when none is recorded;
- ``~/pause``, ``~/resume``, ``~/toggle_paused`` services (std_srvs/Trigger) for ``--start-paused``; rosbag2's own
  control services use rosbag2_interfaces, which pip-only ROS does not have;
- waits for reliable publishers' data to be acknowledged, then exits (``--loop`` replays until interrupted; the clock
  jumps back at each restart, as with ``ros2 bag play --loop``).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from dima_core.bag.play_options import PlayOptions, add_play_arguments, options_from_args
from dima_core.bag.reading import BagError, open_bag
from dima_core.bag.topics import CLOCK_QOS, CLOCK_TOPIC
from dima_ros.converters.qos import qos_profile_from_bag
from dima_ros.converters.stamps import NS_PER_S, set_stamp
from dima_ros.dds_profile import use_large_data_profile

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------- message types


def import_message_class(msgtype: str) -> type:
    """``"sensor_msgs/msg/CompressedImage"`` -> the rclpy message class; ImportError with a hint when unavailable."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ImportError(f"unexpected message type name '{msgtype}' (expected pkg/msg/Name)")
    package, kind, name = parts
    try:
        module = importlib.import_module(f"{package}.{kind}")
        return getattr(module, name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(
            f"message type {msgtype} is not importable here ({exc}); on a ROS install source its setup, "
            f"pip-only: install a wheel that provides '{package}'"
        ) from exc


# ------------------------------------------------------------------------------------------------------- player


@dataclass
class PlayStats:
    """What one ``play()`` call published."""

    messages: int = 0
    clock_messages: int = 0
    loops: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)  # topic -> reason
    wall_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


class _Stopped(Exception):
    """Raised inside the playback loop when the player is stopped (shutdown, Ctrl-C)."""


class BagPlayer(Node):
    """Publishes a rosbag2's messages as recorded, with /clock. Create, then call :meth:`play` from one thread.

    The node's services are served by an executor the caller spins (``play`` starts one on a daemon thread when
    ``spin_services`` is true), while ``play`` paces and publishes in the calling thread, so a busy executor never
    delays the replay.
    """

    def __init__(self, bag: str | Path, options: PlayOptions | None = None, node_name: str = "dima_bag_player") -> None:
        options = options if options is not None else PlayOptions()
        options.validate()
        # Open the bag before the node exists: a missing / corrupt bag (BagError, a ValueError) leaves nothing
        # behind in the rclpy context.
        self._reader: Any | None = None
        reader = open_bag(bag)
        super().__init__(node_name)
        self._reader = reader
        self.options = options
        self.bag_path = Path(bag)
        self.stats = PlayStats()
        self._lock = threading.Lock()
        self._paused = options.start_paused
        self._stop = threading.Event()
        self._state_changed = threading.Event()
        # Pacing anchor: bag time ``_anchor_bag_ns`` corresponds to wall (monotonic) time ``_anchor_wall``.
        self._anchor_bag_ns = 0
        self._anchor_wall = time.monotonic()
        self._last_clock_ns: int | None = None
        self._next_clock_wall = 0.0
        try:
            self._connections, self._publishers_by_id = self._create_publishers()
        except Exception:
            self.destroy_node()  # also closes the reader; the caller never gets this half-built node
            raise
        from rosgraph_msgs.msg import Clock

        self._clock_cls = Clock
        self._clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, qos_profile_from_bag(CLOCK_QOS))
        from std_srvs.srv import Trigger

        self.create_service(Trigger, "~/pause", lambda req, res: self._set_paused(True, res))
        self.create_service(Trigger, "~/resume", lambda req, res: self._set_paused(False, res))
        self.create_service(Trigger, "~/toggle_paused", lambda req, res: self._set_paused(None, res))

    # ------------------------------------------------------------------ setup

    def _create_publishers(self) -> tuple[list[Any], dict[int, Any]]:
        connections = list(self._reader.connections)
        available = sorted({c.topic for c in connections})
        wanted = set(available) if self.options.topics is None else set(self.options.topics)
        unknown = sorted(wanted - set(available))
        if unknown:
            raise ValueError(f"topic(s) {', '.join(unknown)} not in {self.bag_path}; it has: {', '.join(available)}")
        for topic in self.options.wait_for:
            if topic not in wanted:
                raise ValueError(f"--wait-for {topic}: not a played topic of {self.bag_path}")
        chosen, publishers, by_topic = [], {}, {}
        for conn in connections:
            if conn.topic not in wanted:
                continue
            try:
                msg_cls = import_message_class(conn.msgtype)
            except ImportError as exc:
                if self.options.topics is not None:  # asked for by name: refuse rather than silently drop it
                    raise ValueError(f"cannot play {conn.topic}: {exc}") from exc
                self.stats.skipped_topics[conn.topic] = str(exc)
                self.get_logger().warning(f"skipping {conn.topic}: {exc}")
                continue
            if conn.topic not in by_topic:
                profiles = list(getattr(conn.ext, "offered_qos_profiles", None) or [])
                qos = qos_profile_from_bag(profiles[0] if profiles else None)
                by_topic[conn.topic] = self.create_publisher(msg_cls, conn.topic, qos)
            publishers[conn.id] = by_topic[conn.topic]
            chosen.append(conn)
        if not chosen:
            raise ValueError(f"nothing to play from {self.bag_path} (topics skipped: {self.stats.skipped_topics})")
        for topic in self.options.wait_for:
            if topic in self.stats.skipped_topics:
                raise ValueError(f"--wait-for {topic}: {self.stats.skipped_topics[topic]}")
        return chosen, publishers

    # ------------------------------------------------------------------ pause control

    def _set_paused(self, paused: bool | None, response: Any) -> Any:
        with self._lock:
            new = (not self._paused) if paused is None else paused
            if new != self._paused:
                now_bag = self._bag_now_ns()
                self._paused = new
                # Re-anchor so that bag time continues from where it stopped (no jump after a pause).
                self._anchor_bag_ns, self._anchor_wall = now_bag, time.monotonic()
            self._state_changed.set()
        response.success = True
        response.message = "paused" if new else "playing"
        return response

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def stop(self) -> None:
        """Ask a running :meth:`play` to return (thread-safe)."""
        self._stop.set()
        self._state_changed.set()

    # ------------------------------------------------------------------ clock and pacing

    def _bag_now_ns(self) -> int:
        """Current playback position (bag ns); callers hold ``_lock`` or accept a racy read."""
        if self._paused:
            return self._anchor_bag_ns
        return self._anchor_bag_ns + int((time.monotonic() - self._anchor_wall) * self.options.rate * NS_PER_S)

    def _publish_clock(self, ns: int) -> None:
        if self._last_clock_ns is not None and ns <= self._last_clock_ns:
            return  # never send time backwards within a pass, nor the same instant twice
        msg = self._clock_cls()
        set_stamp(msg.clock, ns)
        self._clock_pub.publish(msg)
        self._last_clock_ns = ns
        self.stats.clock_messages += 1

    def _wait_until(self, target_ns: int) -> None:
        """Sleep until the playback position reaches ``target_ns``, publishing /clock at ``clock_hz`` meanwhile."""
        period = 1.0 / self.options.clock_hz if self.options.clock_hz > 0 else None
        while True:
            if self._stop.is_set() or not rclpy.ok(context=self.context):
                raise _Stopped()
            with self._lock:
                now_ns = self._bag_now_ns()
                paused = self._paused
            if not paused and now_ns >= target_ns:
                return
            wall = time.monotonic()
            if period is not None and wall >= self._next_clock_wall:
                self._publish_clock(min(now_ns, target_ns))
                self._next_clock_wall = wall + period
            if paused:
                timeout = period if period is not None else 0.1
            else:
                timeout = (target_ns - now_ns) / (self.options.rate * NS_PER_S)
                if period is not None:
                    timeout = min(timeout, max(0.0, self._next_clock_wall - wall))
            self._state_changed.wait(timeout=max(timeout, 0.0))
            self._state_changed.clear()

    # ------------------------------------------------------------------ playback

    def _wait_for_subscribers(self) -> None:
        deadline = time.monotonic() + self.options.wait_timeout_s
        by_topic = {conn.topic: self._publishers_by_id[conn.id] for conn in self._connections}
        for topic in self.options.wait_for:
            while by_topic[topic].get_subscription_count() == 0:
                if self._stop.is_set():
                    raise _Stopped()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"no subscriber on {topic} after {self.options.wait_timeout_s:g} s (--wait-for)")
                time.sleep(0.05)
            self.get_logger().info(f"{topic} has a subscriber")

    def _play_pass(self) -> None:
        first = True
        self._last_clock_ns = None  # a new pass may start before the previous end (loop)
        messages = iter(self._reader.messages(connections=self._connections))
        while True:
            try:
                conn, timestamp, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # a corrupt chunk / record part-way through: say where, not a storage traceback
                raise BagError(
                    f"cannot read {self.bag_path} after {self.stats.messages} messages: {type(exc).__name__}: {exc}"
                ) from exc
            if first:
                with self._lock:
                    self._anchor_bag_ns, self._anchor_wall = int(timestamp), time.monotonic()
                self._next_clock_wall = 0.0
                first = False
            self._wait_until(int(timestamp))
            try:
                self._publish_clock(int(timestamp))
                self._publishers_by_id[conn.id].publish(bytes(raw))
            except Exception:
                if not rclpy.ok(context=self.context):  # shut down (Ctrl-C) between the check and the publish
                    raise _Stopped() from None
                raise
            self.stats.messages += 1
            self.stats.counts[conn.topic] = self.stats.counts.get(conn.topic, 0) + 1

    def play(self, spin_services: bool = True) -> PlayStats:
        """Replay the bag (once, or until stopped with ``loop``); returns the statistics.

        Raises:
            TimeoutError: a ``--wait-for`` topic got no subscriber in time.
        """
        executor: SingleThreadedExecutor | None = None
        spinner: threading.Thread | None = None
        if spin_services:
            executor = SingleThreadedExecutor(context=self.context)
            executor.add_node(self)

            def spin() -> None:
                try:
                    while not self._stop.is_set() and rclpy.ok(context=self.context):
                        executor.spin_once(timeout_sec=0.1)
                except ExternalShutdownException:
                    pass  # Ctrl-C shut the context down; play() notices through rclpy.ok()

            spinner = threading.Thread(target=spin, name="bag-player-services", daemon=True)
            spinner.start()
        start = time.monotonic()
        try:
            self._wait_for_subscribers()
            if self.options.delay_s > 0:
                self._stop.wait(self.options.delay_s)
            if self.paused:
                self.get_logger().info(f"paused: call {self.get_fully_qualified_name()}/resume (std_srvs/Trigger)")
            while True:
                self._play_pass()
                self.stats.loops += 1
                if not self.options.loop:
                    break
            self._drain()
        except _Stopped:
            pass
        finally:
            self.stats.wall_s = time.monotonic() - start
            self._stop.set()
            if spinner is not None:
                spinner.join(timeout=2.0)
            if executor is not None:
                executor.shutdown(timeout_sec=1.0)
        return self.stats

    def _drain(self) -> None:
        """Let reliable subscribers acknowledge everything before the process (and its DDS writers) goes away."""
        deadline = time.monotonic() + self.options.drain_timeout_s
        for pub in {id(p): p for p in self._publishers_by_id.values()}.values():
            left = deadline - time.monotonic()
            if left <= 0 or not rclpy.ok(context=self.context):
                break
            pub.wait_for_all_acked(Duration(nanoseconds=int(left * NS_PER_S)))

    def destroy_node(self) -> None:
        """Close the bag and destroy the node (safe to call twice)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        super().destroy_node()


# ------------------------------------------------------------------------------------------------------- command line


def run(args: argparse.Namespace) -> int:
    """Play ``args.bag``; 0 when done, 130 on Ctrl-C. Bag/option errors raise ValueError (the CLI prints them)."""
    options = options_from_args(args)
    owned = not rclpy.ok()
    if owned:
        use_large_data_profile()  # before init: full-size camera frames need the larger segment
        rclpy.init()
    player: BagPlayer | None = None
    try:
        player = BagPlayer(args.bag, options)
        if player.stats.skipped_topics:
            print(
                f"dima bag play: skipping {len(player.stats.skipped_topics)} topic(s) whose type is not installed: "
                + ", ".join(sorted(player.stats.skipped_topics)),
                file=sys.stderr,
            )
        stats = player.play()
        interrupted = not rclpy.ok()
        print(
            f"played {stats.messages} messages ({len(stats.counts)} topics, {stats.clock_messages} /clock) "
            f"in {stats.wall_s:.2f} s wall" + (" - interrupted" if interrupted else ""),
            flush=True,
        )
        return 130 if interrupted else 0
    except KeyboardInterrupt:
        print("dima bag play: interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        if player is not None:
            try:
                player.destroy_node()
            except Exception:  # noqa: BLE001 - the context may already be shut down by Ctrl-C; nothing to free
                pass
        if owned:
            rclpy.try_shutdown()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dima_ros.bag_player", description=__doc__.split("\n\n")[0])
    add_play_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (ValueError, TimeoutError) as exc:
        print(f"dima bag play: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "BagPlayer",
    "PlayOptions",
    "PlayStats",
    "import_message_class",
    "main",
    "run",
]
