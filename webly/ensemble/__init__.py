"""Second level: blends, the LightGBM stacker over candidate classes, group aggregation, TTA."""
