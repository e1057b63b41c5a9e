"""Sources of UniHand-Mix rows: the procedural hand world, real-video ingest and lab-dataset converters.

Importing the package registers the built-in sources; their heavy dependencies (MuJoCo, PyAV, MediaPipe) load
only when a source runs.
"""

from dataset_scripts.converters import h2o  # noqa: F401  (registration side effect)
from dataset_scripts.sources import synthetic, video  # noqa: F401  (registration side effect)
