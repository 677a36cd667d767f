"""neuroposter: train Spike-Driven Transformers on poster features, deploy them through NIR, profile energy.

Importing the package is cheap: heavy dependencies (torch, lava, onnxruntime) are imported by the
modules that need them, never here.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
