"""ditlab.teach.readings: the notebooks' claims next to a measurement are computed from it."""
import numpy as np
import pytest

from ditlab.teach import readings


def test_settling_tells_a_quick_drop_from_a_linear_one():
    quick = np.exp(-np.arange(50) / 4) * 0.8
    quick[-1] = 0
    linear = np.linspace(0.8, 0, 50)
    assert readings.settling(quick)["shape"] == "quickly"
    s = readings.settling(linear)
    assert s["shape"] == "steadily" and s["half"] == 25 and s["settled"] == 43  # 0.8·(1 − i/49) < 0.1 from i = 42.9
    text = readings.describe_settling(linear)
    assert "steadily" in text and "step 44 of 50" in text and "quickly" not in text
    assert readings.settling(np.r_[np.full(40, 0.8), np.linspace(0.8, 0, 10)])["shape"] == "late"
    with pytest.raises(ValueError, match="rms"):
        readings.settling([0.0])


def test_variety_claim_follows_the_numbers():
    assert "hardly changes" in readings.describe_variety({1.0: 6.95, 7.0: 6.95})  # the case: no claim
    falls = readings.describe_variety({1.0: 0.30, 4.0: 0.25, 7.0: 0.15})
    assert "falls by 50%" in falls and "0.300 at s = 1" in falls and "0.150 at s = 7" in falls
    assert "rises" in readings.describe_variety({1.0: 0.2, 7.0: 0.3})
    with pytest.raises(ValueError):
        readings.describe_variety({1.0: 0.2})
