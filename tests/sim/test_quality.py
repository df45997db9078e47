"""Quantization quality on all-MiniLM-L6-v2's real weights (measured; the paper's claim is reported, not asserted)."""

import pytest

from sim.quality import SENTENCES, evaluate

pytestmark = pytest.mark.slow  # quantizes and embeds with a real model: about 10 s on 2 cores


@pytest.fixture(scope="module")
def result():
    return evaluate(bits=(4, 3), formats=("bitmod", "int_asym", "fp"), sentences=SENTENCES[:6])


def test_every_layer_and_format_is_measured(result):
    per_layer, summary = result
    assert len(per_layer) == 2 * 3 * 36  # 6 layers x 6 linears
    assert (per_layer.weight_mse > 0).all()
    assert len(summary) == 6 and summary.cos_mean.between(0, 1.0000001).all()


def test_fewer_bits_lose_more(result):
    _, s = result
    for fmt in ("bitmod", "int_asym", "fp"):
        w4 = s[(s.bits == 4) & (s.format == fmt)].iloc[0]
        w3 = s[(s.bits == 3) & (s.format == fmt)].iloc[0]
        assert w3.weight_mse > w4.weight_mse and w3.cos_mean < w4.cos_mean


def test_bitmod_uses_its_four_variants_and_stores_10_bits_per_group(result):
    _, s = result
    row = s[(s.bits == 4) & (s.format == "bitmod")].iloc[0]
    shares = [row[f"share_fp4_{v}"] for v in ("er_pos", "er_neg", "ea_pos", "ea_neg")]
    assert sum(shares) == pytest.approx(1) and min(shares) > 0
    assert row.bits_per_weight == pytest.approx(4 + 10 / 128)
