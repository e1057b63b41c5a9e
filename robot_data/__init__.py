"""Robot datasets for post-training: LeRobot v3.0 folders (`lerobot_v3`: writer, reader, action-chunk view) and
Meta-World expert demonstrations written as one (`metaworld_demos`).

Layering: `modeling_jala` <- `dataset_scripts` <- `robot_data` <- `trainers`; this package may import the first
two, never `trainers`.
"""
