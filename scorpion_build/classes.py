"""Default segmentation classes (the SCORPION task), in one torch-free place."""

DEFAULT_CLASSES: tuple[str, ...] = ("background", "cancer_area", "cancer_stroma")
