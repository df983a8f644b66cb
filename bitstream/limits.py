"""Reader and writer caps (SPEC.md, "Limits"). Nothing read from a file is used before it passes these."""

from __future__ import annotations

MAX_GRID_SIDE = 4096  # tokens per grid side (h, w)
MAX_CODEBOOK = 1 << 24  # codebook size K
MAX_LATENT_CHANNELS = 1024  # C of KL latents
MAX_PATCH = 1024  # spatial patch p and temporal patch t
MAX_STEPS_PER_CHUNK = 4096
MAX_VALUES_PER_CHUNK = 1 << 26  # n_steps * [C *] h * w decoded values held at once
MAX_CHUNK_PAYLOAD = 1 << 30  # bytes
MAX_INDEX_ENTRIES = 1 << 24
MAX_NAME_BYTES = 255
READ_BLOCK = 1 << 20  # payloads are read in blocks so allocation follows the bytes actually present
PREALLOCATE_PER_BYTE = 64  # read_tokens sizes its output from a trailer's count up to this many bytes per file byte
PREALLOCATE_MIN = 1 << 24  # ... plus this many (a count beyond that is gathered step by step as it decodes)
