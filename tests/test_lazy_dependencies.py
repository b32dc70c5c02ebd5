"""GX's unused heavy dependencies are imported lazily, and still work when used."""

import subprocess
import sys

_PROBE = """
import sys
import expectations  # imports great_expectations
loaded = [m for m in ("scipy.stats._stats_py", "altair.vegalite") if m in sys.modules]
import scipy.stats
import altair
print(loaded, scipy.stats.norm.cdf(0.0), "scipy.stats._stats_py" in sys.modules,
      altair.Chart.__name__)
"""


def test_gx_imports_scipy_stats_and_altair_only_when_used():
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                         text=True).stdout.split()
    # Nothing of them ran at import; first use loads them whole.
    assert out == ["[]", "0.5", "True", "Chart"]
