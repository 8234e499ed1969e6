"""digitlab: train, evaluate, explain and serve handwritten-digit recognizers with PyTorch.

Importing the package stays light: heavy or optional modules (matplotlib, fastapi, onnx) are
imported only by the modules that need them.
"""

__version__ = "0.1.0"
