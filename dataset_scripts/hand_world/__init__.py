"""The procedural hand world: MuJoCo-rendered hands doing instruction-conditioned table-top motions.

Why it exists (docs/design.md §4): to run and test the whole system, and to measure the paper's central claim, the
data must make the first frame matter: what the hand does depends on where the target is, which hand is closer,
the object's size and orientation, and obstacles, not on the instruction alone. Lab and wild clips share motion
families and layouts and differ only in look and in label availability.

One job per module:

* :mod:`.geometry`      frames, rotations, projection (numpy)
* :mod:`.postures`      hand shapes and grip-aperture calibration from the skeleton's FK
* :mod:`.layout`        objects and hand starts on the table (data); :mod:`.layout_sampler` samples them
* :mod:`.grasps`        where a hand goes to grasp / pinch / push an object
* :mod:`.motions`       the nine motion families -> D162 and object trajectories
* :mod:`.scenes`        the look per regime (lab / wild), held-out test_wild appearance
* :mod:`.instructions`  templated text for the four task types
* :mod:`.pseudo_labels` tracker-like noise for the pseudo-labelled wild subset
* :mod:`.mjcf`          the MJCF scene, generated in code from hand_jala's skeleton
* :mod:`.renderer`      offscreen rendering (one GL context per process); imports mujoco
* :mod:`.clip`          one clip end to end: plan (no pixels) and render a schema row
* :mod:`.preview`       contact sheet PNG

Rendering needs ``MUJOCO_GL=egl`` (or ``osmesa``) on a headless machine, set before mujoco is imported; the
``synthetic`` source sets ``egl`` by default.
"""
