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


def test_a_second_cpu_llama_process_is_warned_about(tmp_path):
    """Two llama.cpp processes on the same cores slow each other ~15x: the second one says so."""
    code = ("import sys, time\nfrom recover.cpus import claim_cpus\n"
            "print('HELD', claim_cpus(), flush=True)\ntime.sleep(float(sys.argv[1]))\n")
    env = {**os.environ, "RECOVER_CACHE": str(tmp_path)}
    env.pop("RECOVER_THREADS", None)
    first = subprocess.Popen([sys.executable, "-c", code, "20"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "HELD True"
        r = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env, timeout=60)
        assert "HELD False" in r.stdout and f"pid {first.pid}" in r.stderr and "RECOVER_THREADS" in r.stderr
        r = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, timeout=60,
                           env={**env, "RECOVER_THREADS": "1"})
        assert "HELD False" in r.stdout and "WARNING" not in r.stderr  # the user split the cores: no claim
    finally:
        first.kill()
        first.wait()
    r = subprocess.run([sys.executable, "-c", code, "0"], capture_output=True, text=True, env=env, timeout=60)
    assert "HELD True" in r.stdout  # the lock dies with its process: no stale claim


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_training_keeps_freed_memory_so_big_blocks_do_not_fault_again():
    """A training step frees and reallocates blocks of hundreds of MB (the logits and their gradients): kept in the
    process, the second and later allocations reuse the pages instead of faulting in fresh zeroed ones (cpus.py)."""
    code = ("import resource, sys, torch\nfrom recover.cpus import keep_freed_memory\n"
            "print('KEPT', keep_freed_memory(large_blocks=True) if sys.argv[1] == 'keep' else None)\n"
            "def step(n):\n    x = torch.empty(n)\n    x.fill_(1.0)\n    del x\n"
            "step(40_000_000)\nbefore = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
            "for i in range(1, 5):\n    step(40_000_000 - 1_000 * i)\n"
            "print('FAULTS', resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {}
    for how in ("default", "keep"):
        r = subprocess.run([sys.executable, "-c", code, how], capture_output=True, text=True, timeout=120, check=True)
        faults[how] = int(r.stdout.split("FAULTS")[1])
        assert ("KEPT True" in r.stdout) == (how == "keep")
    # 4 x 160 MB, each a little shorter (as batches of other lengths are; glibc's aligned allocation cannot reuse
    # a freed block for one exactly as long): ~156,000 pages faulted again by default, next to none when kept
    assert faults["default"] > 100_000 and faults["keep"] < faults["default"] / 20, faults


@pytest.mark.e2e
@pytest.mark.parametrize("terminal", [False, True], ids=["log", "terminal"])
def test_make_demo_output_is_quiet(terminal):
    """`make demo` prints neither bitsandbytes' kernel warning nor transformers' weight-loading bars,
    on a terminal (a pty via `script`) or into a log (a pipe)."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    make = "make -s -o setup -o .venv/.setup-done demo"
    if terminal:
        if not shutil.which("script"):
            pytest.skip("needs script(1) for a pty")
        cmd = ["script", "-qec", make, "/dev/null"]
    else:
        cmd = make.split()
    r = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert "SCS" in out  # it did run: the score table
    for noise in ("gemm_4bit_forward", "Loading weights", "kernels-community", "FutureWarning"):
        assert noise not in out, noise
    if not terminal:
        assert out.count("\r") == 0  # no carriage-return bars in a log
