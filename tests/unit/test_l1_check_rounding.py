"""benchmarks/l1_cuda_check.py's rel_err_beyond_rounding: a 16-bit gradient judged net of its own rounding, so
that an fp32 result rounding to the other 16-bit neighbour is not counted as kernel error, while a real error is."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from l1_cuda_check import rel_err, rel_err_beyond_rounding  # noqa: E402


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_rounding_alone_scores_zero_and_a_flip_is_forgiven(dtype):
    want = torch.randn(77, 100, generator=torch.Generator().manual_seed(0))
    assert rel_err_beyond_rounding(want.to(dtype), want) == 0.0
    # one reference element just below a rounding midpoint, and a kernel 1e-6 (relative) above it: its result rounds
    # to the other neighbour, a whole ulp from the rounded reference, but only 1e-6 from the reference itself
    k = int(want.abs().argmax())
    low = want.view(-1)[k].to(dtype)
    _, exponent = torch.frexp(low.float())
    bits = 8 if dtype == torch.bfloat16 else 11
    high = (low.float() + torch.sign(low.float()) * torch.ldexp(torch.tensor(1.0), exponent - bits)).to(dtype)
    midpoint = (low.float() + high.float()) / 2
    want.view(-1)[k] = midpoint * (1 - 1e-6)
    got = want.to(dtype)
    got.view(-1)[k] = (midpoint * (1 + 1e-6)).to(dtype)
    assert got.view(-1)[k] == high and want.to(dtype).view(-1)[k] == low
    flip = rel_err(got, want.to(dtype))
    assert flip > 1e-5
    assert rel_err_beyond_rounding(got, want) <= 3e-6 * float(midpoint.abs() / want.norm())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_errors_beyond_the_rounding_still_count(dtype):
    want = torch.randn(77, 100, generator=torch.Generator().manual_seed(1))
    off = (want * 1.03).to(dtype)  # 3 % off everywhere: far beyond half an ulp of either format
    assert rel_err_beyond_rounding(off, want) > 0.02
    zero_for_nonzero = want.to(dtype).clone()
    zero_for_nonzero[0] = 0.0  # a row lost entirely: no rounding excuses it
    assert rel_err_beyond_rounding(zero_for_nonzero, want) >= 0.99 * float(want[0].norm() / want.norm())


def test_fp32_gradients_are_plain_relative_errors():
    want = torch.randn(20, 30, generator=torch.Generator().manual_seed(2))
    got = want + 1e-3
    assert rel_err_beyond_rounding(got, want) == pytest.approx(rel_err(got, want))
