"""The README's Python example runs as written (with the shipped models), and its asserts hold."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README.md has no ```python block"
    namespace: dict = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert namespace["tokens"].shape == (1, 5, 24, 32)
    assert namespace["latents"].shape == (1, 5, 8, 24, 32)
    assert [f.shape[2] for f in namespace["frames"]] == [1, 4, 4, 4, 4]
