"""Sources of UniHand-Mix rows: the procedural hand world, real-video ingest and lab-dataset converters."""
