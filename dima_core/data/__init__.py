"""Data: nuScenes access through the devkit, the synthetic nuScenes-format world, QA, datasets."""
