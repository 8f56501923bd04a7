"""The science of the plugin: selective scan, Mamba models, training, prediction, raster I/O.

Pure Python + torch + numpy + GDAL. Never imports qgis or Qt, so it runs in CI, in a notebook
and inside QGIS alike. Imports inside the package are relative, so it works both as ``engine``
and as ``<plugin>.engine``.
"""

__version__ = "0.1.0"
