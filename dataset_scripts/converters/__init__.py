"""Converters of public lab datasets (exact hand labels) into UniHand-Mix rows.

* :mod:`.base`: the plugin interface, :class:`~.base.LabConverter` (discover sequences, read frames and
  per-frame hand keypoints; the base resamples to 15 fps, cuts 1-10 s clips, fits MANO-D162, splits by
  sequence) and how a third party writes and registers one.
* :mod:`.h2o`: H2O (Kwon et al., ICCV 2021), source name ``h2o``.

``dataset_scripts.sources`` imports the built-in converters so that they register as sources:
``python -m dataset_scripts build --output DIR --source h2o:root=/data/h2o``.
"""

# The sources package imports the built-in converters (registration), and converters import the source base
# class from it. Initialising it first, whichever module is imported first, keeps that cycle in one order.
import dataset_scripts.sources  # noqa: F401
