"""ROS 2 nodes: thin adapters over dima_core (no model logic here)."""
