"""Keep inference commands quiet and light: no training stack, no library progress bars.

sentence-transformers imports transformers' Trainer callbacks, which import peft when it is
installed, which imports bitsandbytes, which prints "Failed to load CPU gemm_4bit_forward ..." on
every command. Inference needs none of them: a None entry in sys.modules makes
`importlib.util.find_spec` report them missing and `import` raise ImportError, which every one of
those libraries handles as "not installed". Only `recover train`, `recover export` and `recover gpu-check` load them.
"""
from __future__ import annotations

import os
import sys

TRAINING_STACK = ("bitsandbytes", "trl", "peft")


def inference_only() -> None:
    for name in TRAINING_STACK:
        if name in sys.modules and sys.modules[name] is not None:
            continue  # already imported by the caller: leave it alone
        sys.modules[name] = None  # type: ignore[assignment]
    quiet_libraries()


def quiet_libraries() -> None:
    # transformers' "Loading weights" bars and hub bars; our own progress (recover.progress) stays.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
