"""Regions given in a CSV (``extract --regions-from``) instead of sampled."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def read_given_regions(csv: Path, region_um: float) -> dict[str, list[dict]]:
    """Regions by slide_id from a CSV with columns ``slide_id,x_um,y_um[,region_um]``.

    Positions are the top-left corners in reference um; a missing ``region_um`` column
    takes ``region_um``. A missing column or a non-numeric (or non-positive size) value
    raises ``ValueError`` naming the file, the column and the lines.
    """
    table = pd.read_csv(csv, dtype={"slide_id": str})
    missing = {"slide_id", "x_um", "y_um"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{csv}: missing column(s) {', '.join(sorted(missing))}; "
            "--regions-from needs slide_id,x_um,y_um (optional region_um)"
        )
    if "region_um" not in table.columns:
        table["region_um"] = region_um
    for col in ("x_um", "y_um", "region_um"):
        values = pd.to_numeric(table[col], errors="coerce")
        bad = ~np.isfinite(values) | ((values <= 0) if col == "region_um" else False)
        if bad.any():
            lines = ", ".join(str(i + 2) for i in table.index[bad][:5])  # +1 header, +1 base
            raise ValueError(
                f"{csv}: '{col}' is not a {'positive ' if col == 'region_um' else ''}number "
                f"on line(s) {lines}; fix or delete those rows"
            )
        table[col] = values
    return {
        sid: g[["x_um", "y_um", "region_um"]].to_dict("records")
        for sid, g in table.groupby("slide_id")
    }
