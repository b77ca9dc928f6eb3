import os
import sys
from pathlib import Path

import pandas as pd
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Tests must never see a real /kaggle/input or a user's embedder choice.
os.environ["RECOVER_KAGGLE_INPUT"] = "/nonexistent-kaggle-input"
os.environ.pop("RECOVER_EMBEDDER", None)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def sample_df():
    from recover.demo import SAMPLE

    return pd.read_csv(SAMPLE, dtype=str, keep_default_na=False)


@pytest.fixture
def test_csv(tmp_path, sample_df):
    p = tmp_path / "test.csv"
    sample_df[["id", "original_text", "rewritten_text"]].to_csv(p, index=False)
    return p


@pytest.fixture(scope="session")
def tiny_sentence_t5(tmp_path_factory):
    from helpers import build_tiny_sentence_t5

    return build_tiny_sentence_t5(tmp_path_factory.mktemp("st5") / "sentence-t5-base")


@pytest.fixture(scope="session")
def smollm2_gguf():
    from recover.pypi_models import smollm2_gguf

    return smollm2_gguf()
