"""UniHand-Mix: dataset schema, builders and sources for JALA pretraining."""
