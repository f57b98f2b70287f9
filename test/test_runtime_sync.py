"""CAM_FRONT-anchored frame synchronisation (pure Python): complete sets, tolerance, missing/late cameras, stale
odometry, command policies, backwards stamps, reset on a jump back, wall-time expiry and bounded queues."""

from __future__ import annotations

from dima_core.constants import CAMERA_NAMES
from dima_core.runtime.frame_sync import NS_PER_MS, FrameSet, FrameSynchronizer, SyncIssue, SyncSettings

MS = NS_PER_MS
S = 1000 * MS


def _sync(**kw) -> FrameSynchronizer:
    return FrameSynchronizer(SyncSettings(**kw))


def _feed(sync, t, skip=(), offsets=None, odom_dt=0, command=2, now=0, accel=True, with_command=True):
    events = []
    offsets = offsets or {}
    events += sync.add_odometry(t + odom_dt, "odom", now)
    if accel:
        events += sync.add_acceleration(t + odom_dt, "accel", now)
    if with_command:
        events += sync.add_command(t, command, now)
    for cam in CAMERA_NAMES:
        if cam not in skip:
            events += sync.add_image(cam, t + offsets.get(cam, 0), cam, now)
    return events


def test_complete_set_in_any_arrival_order_with_camera_jitter():
    sync = _sync()
    ev = _feed(sync, 1 * S, offsets={"CAM_BACK": 40 * MS, "CAM_FRONT_LEFT": -30 * MS})
    assert len(ev) == 1 and isinstance(ev[0], FrameSet)
    assert ev[0].stamp_ns == 1 * S and list(ev[0].images) == list(CAMERA_NAMES)
    assert ev[0].images["CAM_BACK"].stamp_ns == 1 * S + 40 * MS and ev[0].command.value == 2
    # CAM_FRONT first, then the rest: completes on the last input
    sync2 = _sync()
    assert sync2.add_image("CAM_FRONT", 5 * S, "f", 0) == []
    ev = _feed(sync2, 5 * S, skip=("CAM_FRONT",))
    assert len(ev) == 1 and isinstance(ev[0], FrameSet)


def test_missing_and_late_cameras_are_named_when_the_next_anchor_arrives():
    sync = _sync(tolerance_ns=50 * MS)
    assert _feed(sync, 1 * S, skip=("CAM_BACK",), offsets={"CAM_FRONT_RIGHT": 80 * MS}) == []
    ev = _feed(sync, 2 * S)
    issue, frame = ev[0], ev[1]
    assert isinstance(issue, SyncIssue) and issue.kind == "incomplete" and issue.stamp_ns == 1 * S
    text = " | ".join(issue.reasons)
    assert "missing camera CAM_BACK" in text and "late camera CAM_FRONT_RIGHT by 30.0 ms" in text
    assert isinstance(frame, FrameSet) and frame.stamp_ns == 2 * S
    assert sync.stats.incomplete == 1 and sync.stats.complete == 1


def test_wall_time_expiry_reports_a_dead_camera():
    sync = _sync(max_wait_ns=200 * MS)
    assert _feed(sync, 1 * S, skip=("CAM_BACK_LEFT",), now=0) == []
    assert sync.poll(100 * MS) == []
    ev = sync.poll(250 * MS)
    assert len(ev) == 1 and "missing camera CAM_BACK_LEFT" in ev[0].reasons[0] and sync.pending == 0


def test_stale_and_missing_odometry():
    sync = _sync(odometry_max_age_ns=100 * MS)
    _feed(sync, 1 * S, odom_dt=-300 * MS)
    ev = _feed(sync, 2 * S)
    assert isinstance(ev[0], SyncIssue) and any("stale odometry" in r and "-300.0 ms" in r for r in ev[0].reasons)
    sync2 = _sync(use_acceleration=False)
    for cam in CAMERA_NAMES:
        sync2.add_image(cam, 1 * S, cam, 0)
    sync2.add_command(1 * S, 1, 0)
    ev = sync2.poll(10 * S)
    assert ev[0].reasons == ("no odometry received",)


def test_command_policies():
    match = _sync()
    _feed(match, 1 * S, with_command=False)
    match.add_command(1 * S - 500 * MS, 0, 0)  # the previous frame's command must not be used
    ev = match.poll(10 * S)
    assert isinstance(ev[0], SyncIssue) and "no driving command stamped within" in ev[0].reasons[0]
    latest = _sync(command_policy="latest", command_max_age_ns=1 * S)
    latest.add_command(1 * S - 500 * MS, 1, 0)
    ev = _feed(latest, 1 * S, with_command=False)
    assert isinstance(ev[0], FrameSet) and ev[0].command.value == 1
    old = _sync(command_policy="latest", command_max_age_ns=100 * MS)
    old.add_command(1 * S - 500 * MS, 1, 0)
    _feed(old, 1 * S, with_command=False)
    assert "no driving command newer than" in old.poll(10 * S)[0].reasons[0]


def test_backwards_and_duplicate_stamps_are_rejected_then_newer_frames_work():
    sync = _sync()
    assert isinstance(_feed(sync, 2 * S)[0], FrameSet)
    ev = _feed(sync, 2 * S - 100 * MS)
    kinds = {e.kind for e in ev if isinstance(e, SyncIssue)}
    assert kinds == {"backwards"} and not any(isinstance(e, FrameSet) for e in ev)
    assert any("backwards timestamp on CAM_FRONT" in r for e in ev for r in e.reasons)
    dup = sync.add_image("CAM_FRONT", 2 * S, "f", 0)
    assert "duplicate" in dup[0].reasons[0]
    assert isinstance(_feed(sync, 3 * S)[-1], FrameSet)


def test_jump_back_resets_instead_of_rejecting_forever():
    sync = _sync(reset_on_jump_back_ns=2 * S)
    _feed(sync, 100 * S)
    ev = _feed(sync, 10 * S)
    assert any(isinstance(e, SyncIssue) and e.kind == "reset" for e in ev)
    assert isinstance(ev[-1], FrameSet) and ev[-1].stamp_ns == 10 * S and sync.stats.resets == 1


def test_queues_are_bounded_and_runtime_settings_change():
    sync = _sync(camera_queue_size=3)
    for i in range(20):
        sync.add_image("CAM_BACK", i * S, "b", 0)
    assert len(sync._cams["CAM_BACK"]) == 3
    sync.update_settings(tolerance_ns=5 * MS)
    assert sync.settings.tolerance_ns == 5 * MS
