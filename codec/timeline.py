"""The time layout, from its one module `otok.bitstream.timeline` (the file format defines it).

That file is pure Python; it is loaded here from its path, so that importing the codec does not import the
bitstream package (zstandard, numba), which a training machine may lack, and so that it works wherever
codec/ sits beside bitstream/: an installed package, a checkout, or train/gpu_job.py's bare mapping.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _layout_module():
    name = "otok.bitstream.timeline"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent.parent / "bitstream" / "timeline.py"
    spec = importlib.util.spec_from_file_location("otok.codec._layout", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # importable by name, as torch.compile's tracing needs
    spec.loader.exec_module(module)
    return module


_layout = _layout_module()
ONE_SEGMENT = _layout.ONE_SEGMENT
is_segment_start = _layout.is_segment_start
frames_in_step = _layout.frames_in_step
frames_in_steps = _layout.frames_in_steps
step_start_frame = _layout.step_start_frame
step_of_frame = _layout.step_of_frame
num_steps = _layout.num_steps
