"""The science: forward model, methods, metrics and I/O. No Qt or napari imports here."""
