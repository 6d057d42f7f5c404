"""napari-domain-adapt: adapt segmentation networks to new microscopy data without new labels."""

__version__ = "0.1.0"
