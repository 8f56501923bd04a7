"""engine.data.labels: label rasters and vector ROIs on the raster grid, class tables, bad input."""

import logging
import os

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from engine.data.labels import (ClassTable, class_indices, default_color, drop_unusable_classes, read_label_raster,
                                rasterize_rois)
from engine.data.raster import RasterInfo, open_raster

gdal.UseExceptions()
ogr.UseExceptions()

X0, Y0, PX = 500000.0, 5800000.0, 30.0
ROWS, COLS = 8, 10


def srs_of(epsg):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def grid(projection=None, gt=(X0, PX, 0.0, Y0, 0.0, -PX), rows=ROWS, cols=COLS):
    """A RasterInfo of a small UTM 33N grid (or any grid) without a file behind it."""
    wkt = srs_of(32633).ExportToWkt() if projection is None else projection
    return RasterInfo("image.tif", rows, cols, [1], ["band 1"], None, [None], gt, wkt)


def write_labels(path, ids, gt=(X0, PX, 0.0, Y0, 0.0, -PX), epsg=32633, dtype=gdal.GDT_Byte, nodata=0,
                 colors=None, metadata=None):
    ds = gdal.GetDriverByName("GTiff").Create(str(path), ids.shape[1], ids.shape[0], 1, dtype)
    ds.SetGeoTransform(gt)
    if epsg:
        ds.SetProjection(srs_of(epsg).ExportToWkt())
    band = ds.GetRasterBand(1)
    band.WriteArray(ids)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    if colors:
        table = gdal.ColorTable()
        for i, rgb in colors.items():
            table.SetColorEntry(i, (*rgb, 255))
        band.SetRasterColorTable(table)
    if metadata:
        ds.SetMetadata(metadata)
    ds = None
    return str(path)


def pixel_square(row, col, rows=1, cols=1, x0=X0, y0=Y0, px=PX):
    left, top = x0 + col * px, y0 - row * px
    right, bottom = left + cols * px, top - rows * px
    return f"POLYGON(({left} {top},{right} {top},{right} {bottom},{left} {bottom},{left} {top}))"


def pixel_centre(row, col, x0=X0, y0=Y0, px=PX):
    return f"POINT({x0 + (col + 0.5) * px} {y0 - (row + 0.5) * px})"


def write_rois(path, features, epsg=32633, id_type=ogr.OFTInteger, layer="rois"):
    """A GeoPackage of features (wkt, class id, class name) in the coordinates of ``epsg`` (None = no CRS)."""
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    lyr = ds.CreateLayer(layer, srs_of(epsg) if epsg else None, ogr.wkbUnknown)
    lyr.CreateField(ogr.FieldDefn("class_id", id_type))
    lyr.CreateField(ogr.FieldDefn("class_name", ogr.OFTString))
    for wkt, class_id, name in features:
        feature = ogr.Feature(lyr.GetLayerDefn())
        feature.SetField("class_id", class_id)
        feature.SetField("class_name", name)
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        lyr.CreateFeature(feature)
    ds = None
    return str(path)


def to_wgs84(wkt):
    geometry = ogr.CreateGeometryFromWkt(wkt)
    geometry.Transform(osr.CoordinateTransformation(srs_of(32633), srs_of(4326)))
    return geometry.ExportToWkt()


FEATURES = [
    (pixel_square(1, 1, 2, 3), 2, "grass"),     # rows 1-2, cols 1-3
    (pixel_square(5, 6, 2, 2), 7, "water"),     # rows 5-6, cols 6-7
    (pixel_centre(0, 9), 2, "grass"),
    (pixel_centre(7, 0), 4, "soil"),
]


def expected_ids():
    ids = np.zeros((ROWS, COLS), np.int64)
    ids[1:3, 1:4] = 2
    ids[5:7, 6:8] = 7
    ids[0, 9] = 2
    ids[7, 0] = 4
    return ids


def test_label_raster_gives_ids_and_the_class_table_from_metadata_and_colours(tmp_path):
    ids = np.zeros((ROWS, COLS), np.uint8)
    ids[0, :3], ids[4, 4], ids[7, :] = 3, 1, 12
    path = write_labels(tmp_path / "l.tif", ids, colors={1: (10, 20, 30), 3: (1, 2, 3), 12: (200, 100, 0)},
                        metadata={"class_ids": "1,3,5,12", "class_names": "roof,tree,unused,water"})
    labels, table = read_label_raster(path, grid())
    assert labels.dtype == np.int64 and np.array_equal(labels, ids)
    assert table == ClassTable([1, 3, 12], ["roof", "tree", "water"], [(10, 20, 30), (1, 2, 3), (200, 100, 0)])


def test_label_raster_without_metadata_gets_default_names_and_distinct_colours(tmp_path):
    ids = np.arange(ROWS * COLS, dtype=np.float32).reshape(ROWS, COLS) % 6
    ids[0, 0] = -1   # the nodata value: unlabelled
    ids[0, 1] = np.nan
    path = write_labels(tmp_path / "f.tif", ids, dtype=gdal.GDT_Float32, nodata=-1)
    labels, table = read_label_raster(path, grid())
    assert labels[0, 0] == 0 and labels[0, 1] == 0 and labels[0, 2] == 2
    assert table.ids == [1, 2, 3, 4, 5] and table.names == [f"class {i}" for i in range(1, 6)]
    assert len(set(table.colors)) == 5 and table.colors[0] == default_color(1)
    assert len({default_color(i) for i in range(1, 60)}) == 59


def test_label_raster_with_non_integer_negative_or_no_labels_is_refused(tmp_path):
    values = np.zeros((ROWS, COLS), np.float32)
    values[2, 2] = 1.5
    with pytest.raises(ValueError, match="non-integer values"):
        read_label_raster(write_labels(tmp_path / "a.tif", values, dtype=gdal.GDT_Float32, nodata=None), grid())
    values[2, 2] = -2
    with pytest.raises(ValueError, match="negative values"):
        read_label_raster(write_labels(tmp_path / "b.tif", values, dtype=gdal.GDT_Float32, nodata=None), grid())
    with pytest.raises(ValueError, match="no labelled pixel"):
        read_label_raster(write_labels(tmp_path / "c.tif", np.zeros((ROWS, COLS), np.uint8)), grid())


def test_label_raster_on_another_grid_is_refused_with_both_grids_and_the_fix(tmp_path):
    ids = np.ones((ROWS, COLS), np.uint8)
    shifted = write_labels(tmp_path / "shifted.tif", ids, gt=(X0 + 30, PX, 0.0, Y0, 0.0, -PX))
    with pytest.raises(ValueError) as error:
        read_label_raster(shifted, grid())
    message = str(error.value)
    assert "origin (500030, 5.8e+06)" in message and "origin (500000, 5.8e+06)" in message
    assert f"gdalwarp -te 500000 {Y0 - ROWS * PX:g} 500300 5.8e+06 -tr 30 30 -t_srs EPSG:32633 -r near" in message
    smaller = write_labels(tmp_path / "small.tif", ids[:-1])
    with pytest.raises(ValueError, match=f"{COLS} x {ROWS - 1} px"):
        read_label_raster(smaller, grid())
    other_crs = write_labels(tmp_path / "crs.tif", ids, epsg=32632)
    with pytest.raises(ValueError, match="CRS EPSG:32632"):
        read_label_raster(other_crs, grid())
    no_crs = write_labels(tmp_path / "nocrs.tif", ids, epsg=None)
    assert read_label_raster(no_crs, grid())[0].sum() == ROWS * COLS, "CRS is compared only when both have one"


def test_missing_or_multiband_label_raster_is_refused(tmp_path):
    with pytest.raises(ValueError, match="label raster file not found: .*nothing.tif"):
        read_label_raster(str(tmp_path / "nothing.tif"), grid())
    ds = gdal.GetDriverByName("GTiff").Create(str(tmp_path / "two.tif"), COLS, ROWS, 2, gdal.GDT_Byte)
    ds = None
    with pytest.raises(ValueError, match="has 2 bands"):
        read_label_raster(str(tmp_path / "two.tif"), grid())


def test_classes_with_0_or_1_usable_pixels_are_left_out_with_a_warning(tmp_path, caplog):
    ids = np.zeros((ROWS, COLS), np.uint8)
    ids[0, :4] = 1          # 4 px, all under nodata -> 0 usable
    ids[1, :2] = 2          # 2 px, one under nodata -> 1 usable
    ids[2, :3] = 3          # 3 px usable
    ids[3, :2] = 4          # 2 px usable: the minimum
    valid = np.ones((ROWS, COLS), bool)
    valid[0, :] = False
    valid[1, 0] = False
    path = write_labels(tmp_path / "l.tif", ids)
    with caplog.at_level(logging.WARNING):
        labels, table = read_label_raster(path, grid(), valid=valid)
    assert table.ids == [3, 4] and table.names == ["class 3", "class 4"]
    assert np.array_equal(labels, np.where(valid & (ids >= 3), ids, 0))
    assert "class 1 (class 1) has 0 usable pixels" in caplog.text
    assert "class 2 (class 2) has 1 usable pixel after" in caplog.text
    rois = write_rois(tmp_path / "r.gpkg", [(pixel_square(0, 0, 1, 4), 1, "a"), (pixel_square(1, 0, 1, 2), 2, "b"),
                                            (pixel_square(2, 0, 1, 3), 3, "c"), (pixel_square(3, 0, 1, 2), 4, "d")])
    labels, table = rasterize_rois(rois, grid(), "class_id", "class_name", valid=valid)
    assert table.ids == [3, 4] and table.names == ["c", "d"]
    assert np.array_equal(labels, np.where(valid & (ids >= 3), ids, 0))


def test_fewer_than_two_trainable_classes_is_an_error():
    ids = np.zeros((4, 4), np.int64)
    ids[0, :3], ids[1, 0] = 1, 2
    table = ClassTable([1, 2], ["a", "b"], [(0, 0, 0)] * 2)
    with pytest.raises(ValueError, match="only 1 class"):
        drop_unusable_classes(ids, table, np.ones((4, 4), bool))


def test_class_indices_maps_ids_to_table_positions():
    table = ClassTable([10, 1, 14], ["a", "b", "c"], [(0, 0, 0)] * 3)
    ids = np.array([[0, 1, 10], [14, 13, 99]])
    assert class_indices(ids, table).tolist() == [[-1, 1, 0], [2, -1, -1]]
    assert class_indices(ids, table).dtype == np.int64


def test_rasterize_polygons_and_points_exactly(tmp_path):
    path = write_rois(tmp_path / "r.gpkg", FEATURES)
    ids, table = rasterize_rois(path, grid(), "class_id", "class_name")
    assert ids.dtype == np.int64 and np.array_equal(ids, expected_ids())
    assert table.ids == [2, 4, 7] and table.names == ["grass", "soil", "water"]
    assert table.colors == [default_color(2), default_color(4), default_color(7)]
    ids, table = rasterize_rois(path, grid(), "class_id")
    assert table.names == ["class 2", "class 4", "class 7"]


def test_rasterize_reprojects_rois_in_another_crs(tmp_path, caplog):
    path = write_rois(tmp_path / "wgs84.gpkg", [(to_wgs84(w), i, n) for w, i, n in FEATURES], epsg=4326)
    with caplog.at_level(logging.INFO):
        ids, table = rasterize_rois(path, grid(), "class_id", "class_name")
    assert np.array_equal(ids, expected_ids())
    assert "reprojected from EPSG:4326 to the raster's EPSG:32633" in caplog.text


def test_string_class_ids_with_digits_are_accepted(tmp_path):
    features = [(w, str(i), n) for w, i, n in FEATURES]
    path = write_rois(tmp_path / "s.gpkg", features, id_type=ogr.OFTString)
    ids, _ = rasterize_rois(path, grid(), "class_id", "class_name")
    assert np.array_equal(ids, expected_ids())


def test_rasterize_refuses_bad_fields_and_values(tmp_path):
    path = write_rois(tmp_path / "r.gpkg", FEATURES)
    with pytest.raises(ValueError, match="no field 'klasse'; its fields: class_id, class_name"):
        rasterize_rois(path, grid(), "klasse")
    with pytest.raises(ValueError, match="no field 'label'; its fields: class_id, class_name"):
        rasterize_rois(path, grid(), "class_id", "label")
    with pytest.raises(ValueError, match="'grass', which is not an integer class id"):
        rasterize_rois(path, grid(), "class_name")
    with pytest.raises(ValueError, match="no layer 'other'; its layers: rois"):
        rasterize_rois(path, grid(), "class_id", layer="other")
    zero = write_rois(tmp_path / "zero.gpkg",
                      FEATURES + [(pixel_centre(3, 3), 0, "none"), (pixel_centre(3, 4), -2, "x")])
    with pytest.raises(ValueError, match=r"class ids <= 0 \(2 features"):
        rasterize_rois(zero, grid(), "class_id")


def test_rois_outside_the_raster_are_refused(tmp_path):
    far = [(pixel_square(0, 0, x0=X0 + 1e5), 1, "a"), (pixel_centre(0, 0, y0=Y0 - 1e5), 2, "b")]
    with pytest.raises(ValueError, match="ROI layer has no features inside the raster extent; check that both use "
                                         "the same area and CRS"):
        rasterize_rois(write_rois(tmp_path / "far.gpkg", far), grid(), "class_id")
    wrong_crs = [(pixel_square(1, 1), 1, "a")]   # UTM coordinates declared as Web Mercator: elsewhere
    with pytest.raises(ValueError, match="no features inside the raster extent"):
        rasterize_rois(write_rois(tmp_path / "crs.gpkg", wrong_crs, epsg=3857), grid(), "class_id")


def test_missing_or_unreadable_roi_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="ROI file not found: .*none.gpkg"):
        rasterize_rois(str(tmp_path / "none.gpkg"), grid(), "class_id")
    (tmp_path / "junk.gpkg").write_text("junk")
    with pytest.raises(ValueError, match="cannot read ROI file .*junk.gpkg"):
        rasterize_rois(str(tmp_path / "junk.gpkg"), grid(), "class_id")


def test_classes_whose_rois_cover_no_pixel_centre_are_left_out(tmp_path, caplog):
    tiny = f"POLYGON(({X0 + 1} {Y0 - 1},{X0 + 5} {Y0 - 1},{X0 + 5} {Y0 - 5},{X0 + 1} {Y0 - 1}))"
    far = pixel_centre(0, 0, x0=X0 + 1e5)
    path = write_rois(tmp_path / "t.gpkg", FEATURES + [(tiny, 9, "tiny"), (far, 8, "far")])
    with caplog.at_level(logging.WARNING):
        ids, table = rasterize_rois(path, grid(), "class_id", "class_name")
    assert table.ids == [2, 4, 7] and np.array_equal(ids, expected_ids())
    assert "class 9 (tiny): its ROIs cover no pixel centre" in caplog.text
    assert "class 8 (far): its ROIs cover no pixel centre" in caplog.text
    assert "1 of 6 ROI features" in caplog.text and "lie outside the raster extent" in caplog.text
    with pytest.raises(ValueError, match="cover no pixel centre"):
        rasterize_rois(write_rois(tmp_path / "only.gpkg", [(tiny, 9, "tiny")]), grid(), "class_id")


def test_overlapping_rois_of_different_classes_are_reported(tmp_path, caplog):
    path = write_rois(tmp_path / "o.gpkg", [(pixel_square(0, 0, 2, 2), 1, "a"), (pixel_square(1, 1, 2, 2), 2, "b"),
                                            (pixel_square(5, 5, 2, 2), 3, "c"), (pixel_square(5, 5, 1, 1), 3, "c")])
    with caplog.at_level(logging.WARNING):
        ids, _ = rasterize_rois(path, grid(), "class_id")
    assert ids[1, 1] == 2 and ids[0, 0] == 1 and ids[5, 5] == 3
    assert "1 pixels are covered by ROIs of different classes" in caplog.text


def test_non_georeferenced_scene_with_rois_on_the_pixel_grid(shared_data, tmp_path):
    """Salinas-A and the MUUFL crop have no CRS; ROIs without CRS use x = column, y = -row."""
    salinas = open_raster(os.path.join(shared_data, "salinas_a", "salinas_a.tif"))
    features = [(pixel_square(10, 20, 3, 4, x0=0, y0=0, px=1), 1, "a"),
                (pixel_centre(82, 85, x0=0, y0=0, px=1), 5, "b")]
    ids, table = rasterize_rois(write_rois(tmp_path / "s.gpkg", features, epsg=None), salinas, "class_id")
    assert table.ids == [1, 5] and (ids == 1).sum() == 12 and ids[10:13, 20:24].min() == 1 and ids[82, 85] == 5
    muufl = open_raster(os.path.join(shared_data, "muufl_crop", "muufl_hsi.tif"))
    # full-grid coordinates: row 150 + r, column 29 + c is crop pixel (r, c)
    features = [(pixel_centre(150, 29, x0=0, y0=0, px=1), 3, "a"), (pixel_centre(239, 118, x0=0, y0=0, px=1), 8, "b"),
                (pixel_centre(10, 10, x0=0, y0=0, px=1), 2, "outside the crop")]
    ids, table = rasterize_rois(write_rois(tmp_path / "m.gpkg", features, epsg=None), muufl, "class_id")
    assert table.ids == [3, 8] and ids[0, 0] == 3 and ids[89, 89] == 8 and (ids > 0).sum() == 2


def test_enmap_rois_rasterize_to_the_label_raster_in_any_crs(shared_data, tmp_path):
    folder = os.path.join(shared_data, "enmap_potsdam")
    info = open_raster(os.path.join(folder, "enmap_potsdam_mosaic.tif"))
    labels, label_table = read_label_raster(os.path.join(folder, "enmap_potsdam_labels.tif"), info)
    assert (labels > 0).sum() == 5672 and label_table.ids == [1, 2, 3, 4, 5, 6]
    assert label_table.names == ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
    assert label_table.colors[0] == (230, 0, 0) and label_table.colors[5] == (0, 100, 255)
    rois = os.path.join(folder, "enmap_potsdam_rois.gpkg")
    ids, table = rasterize_rois(rois, info, "class_id", "class_name")
    assert np.array_equal(ids, labels) and table.names == label_table.names
    wgs84 = str(tmp_path / "rois_4326.gpkg")
    gdal.VectorTranslate(wgs84, rois, dstSRS="EPSG:4326", reproject=True)
    assert np.array_equal(rasterize_rois(wgs84, info, "class_id", "class_name")[0], labels)


def test_pixel_grid_label_rasters_real_data(shared_data):
    salinas = open_raster(os.path.join(shared_data, "salinas_a", "salinas_a.tif"))
    ids, table = read_label_raster(os.path.join(shared_data, "salinas_a", "salinas_a_labels.tif"), salinas)
    assert table.ids == [1, 10, 11, 12, 13, 14] and (ids > 0).sum() == 5348
    assert class_indices(ids, table).max() == 5 and table.names[1] == "Corn_senesced_green_weeds"
    muufl = open_raster(os.path.join(shared_data, "muufl_crop", "muufl_hsi.tif"))
    ids, table = read_label_raster(os.path.join(shared_data, "muufl_crop", "muufl_labels.tif"), muufl)
    assert table.ids == [1, 2, 3, 5, 7, 8, 9, 10] and (ids > 0).sum() == 6970
    with pytest.raises(ValueError, match="not on the grid"):
        read_label_raster(os.path.join(shared_data, "muufl_crop", "muufl_full_labels.tif"), muufl)


def test_rois_without_crs_on_a_georeferenced_raster_are_used_as_they_are(tmp_path, caplog):
    path = write_rois(tmp_path / "nocrs.gpkg", FEATURES, epsg=None)
    with caplog.at_level(logging.WARNING):
        ids, _ = rasterize_rois(path, grid(), "class_id")
    assert np.array_equal(ids, expected_ids())
    assert "has no CRS and the raster has one; ROI coordinates are used as they are" in caplog.text
