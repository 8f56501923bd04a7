"""Inference: a trained model over a raster of any size.

``tiling`` plans overlapping tiles and predicts an image in memory through them, ``predict`` streams a
raster tile by tile into the class, confidence, cluster and probability rasters (temporary files,
renamed at the end), and ``postprocess`` cleans a class map (sieve, majority filter).
"""
