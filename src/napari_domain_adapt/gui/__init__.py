"""The napari plugin: the dock widget, its worker jobs, and the reader, writer and sample
data that ``napari.yaml`` contributes. It calls the core; the core never imports it."""
