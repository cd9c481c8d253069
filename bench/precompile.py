"""Compile aep-ops' own modules to .pyc before a timed run.

aep-ops is installed editable (``pip install -e``): its modules are imported from the source
tree, where nothing compiles them ahead of time, while peers installed by pip come with their
.pyc files. Where PYTHONDONTWRITEBYTECODE is set (it is on the development machines) Python
then recompiles every aep-ops module at every start (about 50 ms of a fleet.run), a cost no
real installation pays. compileall writes the files whatever that variable says.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def precompile() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "aep_ops"), str(REPO / "tasks.py")],
                   check=True, stdout=subprocess.DEVNULL)
