"""Run the Triton kernels on the CPU through Triton's interpreter.

TRITON_INTERPRET must be set when the @triton.jit decorators run, i.e. before harmonic.kernels is first imported;
it is set here, the kernel modules are (re)imported, and the variable is then restored so it does not leak into
the environment of other test folders' subprocesses.
"""

import importlib
import os
import sys

_previous = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
try:
    for _name in [m for m in sys.modules if m == "harmonic.kernels" or m.startswith("harmonic.kernels.")]:
        del sys.modules[_name]
    importlib.import_module("harmonic.kernels")
finally:
    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _triton_interpreter(monkeypatch):
    """Triton also reads TRITON_INTERPRET when a kernel launches: set it for each kernel test only."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
