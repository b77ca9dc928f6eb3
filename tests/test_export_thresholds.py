"""Export thresholds come from a measured distribution, and the shipped file is what the code writes."""
import json

import pytest

from recover.export import thresholds as T
from recover.export.verify import threshold
from recover.models.quantize import QUANT_TYPES


def test_shipped_thresholds_cover_every_quant_and_sit_above_what_was_measured():
    d = json.loads(T.THRESHOLDS_FILE.read_text())
    # 8 verification prompts + 30 sample rows x (texts, prompt): written out here, not read from the code
    assert d["kind"] == "export_thresholds" and d["prompts"] == 68 == len(T.measurement_prompts())
    assert set(d["quants"]) == set(QUANT_TYPES) and d["command"].startswith("recover export thresholds")
    for q, v in d["quants"].items():
        assert v["p50"] <= v["p95"] <= v["max"] <= v["threshold"] <= 1.5 * v["max"] + 0.1, q  # README: 1.5x the max
        assert threshold(q) == v["threshold"]
    with pytest.raises(ValueError, match="no measured logit threshold"):
        threshold("Q9_9")


@pytest.mark.e2e
def test_measuring_writes_the_shipped_schema(tmp_path):
    """The same function on a tiny random model (write=False): the keys the shipped file holds."""
    from recover.gpu_check import tiny_model
    from recover.models.hf_model import materialize_hf

    model = tiny_model(tmp_path / "tiny", materialize_hf("pypi:smollm2", None))
    rep = T.measure_thresholds(str(model), ["F16", "Q8_0"], str(tmp_path / "out"), "recover export thresholds --x",
                               write=False, log=lambda *_: None)
    shipped = json.loads(T.THRESHOLDS_FILE.read_text())
    assert set(rep) == set(shipped)
    assert set(rep["quants"]["Q8_0"]) == set(next(iter(shipped["quants"].values())))
    assert rep["quants"]["F16"]["max"] <= rep["quants"]["Q8_0"]["max"]  # 16-bit is closer to fp32 than 8-bit
