"""The version of symjac (a leaf module: `symjac.export` writes it into exported kernels)."""

__version__ = "0.1.0"
