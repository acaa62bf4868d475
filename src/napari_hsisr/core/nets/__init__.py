"""Neural networks (torch modules). Imported lazily: ``import napari_hsisr`` never imports torch."""
