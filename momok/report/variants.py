"""Run variant names (the ``<variant>`` of ``runs/<dataset>/<model>/<variant>/seed<k>``): one definition
for the workflow, which builds them (``workflow/rules/common.smk``), and the report, which reads the
swept values back from them.

* ``full``: the model's run config on the dataset, nothing changed (Table 2);
* ``<name>``: a named entry of the workflow config's ``variants`` (the Table 3 ablations, ``wo_exid``, ...);
* ``<grid><value>``: a point of a Figure 4 grid (``K3``, ``lambda0.001``);
* ``noise<ratio>``: Figure 3's features with Gaussian noise on a share ``ratio`` of the entities
  (``noise0.2``); ratio 0 is the ``full`` run.
"""

from __future__ import annotations

import re

FULL = "full"
#: the grid name of the noise variants
NOISE = "noise"
#: ``<grid><value>``: a grid name (letters and underscores) followed by a number as written in the config
SWEEP_POINT = re.compile(r"^([A-Za-z_]+)([-+]?[0-9][0-9.eE+-]*)$")


def sweep_variant(grid: str, value) -> str:
    """The variant of one point of a sweep: ``sweep_variant("K", 3) == "K3"``."""
    return f"{grid}{value}"


def noise_variant(ratio) -> str:
    """The variant of a Figure 3 noise ratio: ``noise<ratio>``, or ``full`` for ratio 0."""
    return FULL if float(ratio) == 0 else sweep_variant(NOISE, ratio)


def sweep_point(variant: str) -> tuple[str, str] | None:
    """``(grid, value text)`` of a ``<grid><value>`` variant (``("noise", "0.2")``); None for other names."""
    match = SWEEP_POINT.match(variant)
    return (match.group(1), match.group(2)) if match else None


def noise_ratio(variant: str) -> str | None:
    """The ratio of a ``noise<ratio>`` variant, as written (it names the noisy feature folder); else None."""
    point = sweep_point(variant)
    return point[1] if point and point[0] == NOISE else None


def variant_value(variant: str, grid: str) -> float | None:
    """The number of a ``<grid><value>`` variant: ``variant_value("noise0.2", "noise") == 0.2``; None
    when ``variant`` is not a point of ``grid``."""
    point = sweep_point(variant)
    if point is None or point[0] != grid:
        return None
    try:
        return float(point[1])
    except ValueError:  # the pattern admits malformed numbers such as "1.2.3"
        return None
