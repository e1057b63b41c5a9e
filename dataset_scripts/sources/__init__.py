"""Sources of UniHand-Mix rows: the procedural hand world, real-video ingest and lab-dataset converters.

* :mod:`.base`: the plugin interface (:class:`~.base.ClipSource`, ``@register_source``, entry points).
* :mod:`.synthetic`: the procedural hand world, source name ``synthetic``.
* :mod:`.video`: real-video ingest with a hand tracker, source name ``video``.
* :mod:`.lab_converter`: the base of lab-dataset converters, :class:`~.lab_converter.LabConverter` (discover
  sequences, read frames and per-frame hand keypoints; the base resamples to 15 fps, cuts 1-10 s clips, fits
  MANO-D162, splits by sequence), and how a third party writes and registers one.
* :mod:`.h2o`: H2O (Kwon et al., ICCV 2021), source name ``h2o``:
  ``python -m dataset_scripts build --output DIR --source h2o:root=/data/h2o``.

Importing the package registers the built-in sources; their heavy dependencies (MuJoCo, PyAV, MediaPipe) load
only when a source runs. Converters are sources like the others: one package, whose modules import their
siblings' base classes and nothing that imports this package back.
"""

from dataset_scripts.sources import h2o, synthetic, video  # noqa: F401  (registration side effect)
