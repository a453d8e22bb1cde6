"""scorpion-build: scanner-paired patch datasets from multi-scanner whole-slide images."""
__version__ = "0.1.0"
