"""Makes `import r1lite` find this checkout's package when it is built in place (the developer
build copies _core*.so into python/r1lite), and the installed package otherwise."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "python" / "r1lite").glob("_core*")) and str(ROOT / "python") not in sys.path:
    sys.path.insert(0, str(ROOT / "python"))
