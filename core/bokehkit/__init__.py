"""bokehkit: photorealistic lens bokeh and super-resolution."""

__version__ = "0.1.0"
