"""A quiet, well-behaved runtime: no training stack at inference, log-friendly progress, sane threads."""
import io
import os
import subprocess
import sys

import pytest

from recover.cpus import usable_cpus
from recover.progress import LogProgress, progress


def test_predict_imports_neither_bitsandbytes_nor_trl(tmp_path, test_csv):
    code = ("import sys\nfrom recover.cli import entry\n"
            f"sys.argv = ['recover', 'predict', '--input', {str(test_csv)!r}, '--output', {str(tmp_path / 's.csv')!r}]\n"
            "try:\n    entry()\nexcept SystemExit as e:\n    rc = e.code\n"
            "bad = [m for m in ('bitsandbytes', 'trl', 'peft') if sys.modules.get(m) is not None]\n"
            "print('RC', rc, 'LOADED', bad)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert "RC 0 LOADED []" in r.stdout, r.stdout + r.stderr[-3000:]
    assert "gemm_4bit_forward" not in r.stderr and "Loading weights" not in r.stderr


def test_log_progress_prints_a_few_lines_not_a_flood():
    buf = io.StringIO()
    bar = LogProgress(1400, "predict", "row", every_pct=10, every_s=0, file=buf)
    for _ in range(1400):
        bar.update(1)
    lines = buf.getvalue().splitlines()
    assert 9 <= len(lines) <= 11 and "\r" not in buf.getvalue()
    assert lines[-1].startswith("predict: 1400/1400 row (100%)") and "ETA" in lines[-1]


def test_progress_is_plain_when_not_a_terminal():
    assert isinstance(progress(10, "x", file=io.StringIO()), LogProgress)


def test_threads_follow_affinity_and_override(monkeypatch):
    monkeypatch.delenv("RECOVER_THREADS", raising=False)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cpus() <= len(os.sched_getaffinity(0))
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert usable_cpus() == 1
    monkeypatch.setenv("RECOVER_THREADS", "3")
    assert usable_cpus() == 3
    monkeypatch.setenv("RECOVER_THREADS", "zero")
    with pytest.raises(ValueError, match="RECOVER_THREADS"):
        usable_cpus()
