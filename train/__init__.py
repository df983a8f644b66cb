"""otok.train: train the tokenizer in three stages, as the OmniTokenizer paper does.

    python train/run.py --stage image --model otok-s --data DIR --steps N --batch B --out OUT
    torchrun --nproc_per_node 8 train/run.py ...            # DDP, one data shard per rank

Modules, one concern each: `config` (TrainConfig and the command line), `data` (lazy, seeded image and
clip batches), `losses`, `discriminators`, `schedule`, `checkpoint` (atomic save/resume), `loop`.
"""

from .config import TrainConfig, parse_args
from .loop import train

__all__ = ["TrainConfig", "parse_args", "train"]
