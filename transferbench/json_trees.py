"""Where two JSON trees first differ: the one check behind every "stored against recomputed"
comparison (a result file's metrics re-derived on load, a reference's tables re-derived from its
predictions, the golden smoke run). Each caller picks its tolerance; the walk is the same.
"""

from __future__ import annotations

import math
from typing import Any


def first_difference(stored: Any, recomputed: Any, where: str = "", tolerance: float = 0.0) -> str:
    """'' if the two JSON values agree, else the path of the first difference and what differs
    there, e.g. `"cells[3].mean: stored 0.25, recomputed 0.5"` (`where` prefixes the path).

    Numbers agree within the absolute `tolerance`, and NaN agrees with NaN (a JSON file may store
    an undefined metric as NaN); a bool is a value, not a number. Dicts must have the same keys
    (walked in sorted order, so the first difference is the same every time), lists the same length.
    """
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        for key in sorted(set(stored) | set(recomputed), key=str):
            path = f"{where}.{key}" if where else str(key)
            if key not in stored or key not in recomputed:
                return f"{path}: only in {'stored' if key in stored else 'recomputed'}"
            found = first_difference(stored[key], recomputed[key], path, tolerance)
            if found:
                return found
        return ""
    if isinstance(stored, list) and isinstance(recomputed, list):
        if len(stored) != len(recomputed):
            return f"{where}: {len(stored)} items stored, {len(recomputed)} recomputed"
        for i, (a, b) in enumerate(zip(stored, recomputed)):
            found = first_difference(a, b, f"{where}[{i}]", tolerance)
            if found:
                return found
        return ""
    numbers = (int, float)
    if (isinstance(stored, numbers) and isinstance(recomputed, numbers)
            and not isinstance(stored, bool) and not isinstance(recomputed, bool)):
        if (math.isnan(stored) and math.isnan(recomputed)) or abs(stored - recomputed) <= tolerance:
            return ""
    elif stored == recomputed and isinstance(stored, bool) == isinstance(recomputed, bool):  # true is not 1
        return ""
    return f"{where}: stored {stored!r}, recomputed {recomputed!r}"
