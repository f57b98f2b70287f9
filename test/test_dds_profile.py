"""Which Fast DDS profile our ROS processes get (dima_ros/dds_profile.py); the transport itself is exercised by the
ROS pipeline tests and measured by `dima bench latency --pipelines ros`."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from dima_ros.dds_profile import PROFILE_VARIABLES, profile_environment, use_large_data_profile
from dima_ros.launch_spec import repository_root


def test_shipped_profile_is_used_when_the_user_chose_none():
    env = {"RMW_IMPLEMENTATION": "rmw_fastrtps_cpp"}
    path = use_large_data_profile(env)
    assert path == str((repository_root() / "config" / "fastdds_large_data.xml").resolve())
    assert env[PROFILE_VARIABLES[0]] == path
    # A well-formed Fast DDS profile whose shared-memory segment holds several six-JPEG frame sets (~1.2 MB each).
    root = ET.parse(path).getroot()
    sizes = [int(e.text) for e in root.iter("{http://www.eprosima.com}segment_size")]
    assert sizes and min(sizes) >= 8 * 1024 * 1024


def test_a_user_profile_or_another_rmw_is_left_alone(tmp_path):
    for name in PROFILE_VARIABLES:
        env = {name: "/etc/my_profile.xml"}
        assert use_large_data_profile(env) is None and env == {name: "/etc/my_profile.xml"}
    assert profile_environment(environ={"RMW_IMPLEMENTATION": "rmw_cyclonedds_cpp"}) == {}
    # An install without our config directory: nothing to point at.
    assert profile_environment(str(tmp_path), environ={}) == {}
    (tmp_path / "fastdds_large_data.xml").write_text("<dds/>")
    assert profile_environment(str(tmp_path), environ={}) == {
        PROFILE_VARIABLES[0]: str((tmp_path / "fastdds_large_data.xml").resolve())
    }
