"""Real-video ingest for UniHand-Mix: decoding, 15 fps resampling, pluggable hand tracking, 3D lifting to D162.

One job per module, so each can be tested and replaced on its own:

* :mod:`.decode`: video/GIF decoding with PyAV (FFmpeg), display rotation applied, frame timestamps;
* :mod:`.resample`: source timestamps -> 15 fps clip frames, with the paper's 0.5x slow-down for wild footage,
  and the timeline helpers (runs, gap closing, even splits) that cut clips;
* :mod:`.trackers`: the :class:`~.trackers.HandTracker` protocol, a registry, the ``none`` and ``mediapipe``
  trackers;
* :mod:`.lifting`: tracker landmarks -> camera-frame metric keypoints (assumed intrinsics + PnP translation)
  -> MANO-D162 through :meth:`modeling_jala.hand_jala.HandSkeleton.fit_keypoints`.

The registered ``video`` source (:mod:`dataset_scripts.sources.video`) strings them together. Nothing here is
imported by ``dataset_scripts`` at start-up, so PyAV and MediaPipe stay optional for builds without real video.
"""
