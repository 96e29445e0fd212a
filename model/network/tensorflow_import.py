"""Importing TensorFlow and Keras without their start-up chatter in the operator's log.

TensorFlow's C++ runtime prints informational lines (oneDNN, CPU features, absl's preamble) to
file descriptor 2 while it loads, whatever TF_CPP_MIN_LOG_LEVEL says for some of them. They are
caught during the import; anything else it printed (a warning that matters, an error) is passed on.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile

# Lines that say nothing an operator can act on.
_CHATTER = re.compile(r"^(I\d{4} .*\] (oneDNN custom operations are on|This TensorFlow binary is optimized)"
                      r"|WARNING: All log messages before absl::InitializeLog\(\) is called"
                      r"|To enable the following instructions: .* rebuild TensorFlow)")


def import_tensorflow() -> None:
    """Import tensorflow and keras once, quietly. A no-op when they are imported already."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # warnings and errors only, from here on
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            lines = caught.read().decode(errors="replace").splitlines()
    kept = [line for line in lines if line.strip() and not _CHATTER.match(line)]
    if kept:
        print("\n".join(kept), file=sys.stderr)
