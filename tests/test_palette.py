"""One way to draw a label map over a patch, shared by the benchmark montage and the report."""

from __future__ import annotations

import numpy as np

from scorpion_build.palette import CLASS_RGB, OVERLAY_ALPHA, class_legend, overlay


def test_overlay_tints_classes_outlines_them_and_leaves_background_and_missing_alone():
    image = np.full((12, 12, 3), 200, np.uint8)
    label = np.zeros((12, 12), np.uint8)
    label[2:10, 2:10] = 1
    label[0, :] = 255  # "no prediction here"
    out = overlay(image, label, missing=255)
    inside = out[5, 5].astype(float)
    np.testing.assert_allclose(
        inside, 200 * (1 - OVERLAY_ALPHA) + CLASS_RGB[1] * OVERLAY_ALPHA, atol=1
    )
    assert (out[2, 5] == CLASS_RGB[1]).all()  # boundary drawn in full colour
    assert (out[11, 11] == 200).all() and (out[0] == 200).all()
    # without ``missing``, 255 is just a class past the palette: drawn in its last colour
    assert (overlay(image, label)[0, 5] == CLASS_RGB[-1]).all()


def test_legend_names_every_class_but_the_background_in_its_overlay_colour():
    handles = class_legend(["background", "tumour", "stroma"])
    assert [h.get_label() for h in handles] == ["tumour", "stroma"]
    np.testing.assert_allclose(handles[0].get_facecolor()[:3], CLASS_RGB[1] / 255)
