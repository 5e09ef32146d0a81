"""Forward processes, schedules and tau conversions (THEORY section 0)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from diffphase.errors import ParameterError
from diffphase.process import Process, get_process, li_yan_betas, linear_betas, make_betas


@pytest.mark.parametrize("name", ["ou", "ve"])
@given(t=st.floats(1e-8, 20.0))
def test_continuous_round_trip(name, t):
    proc = get_process(name)
    assert float(proc.time_from_tau(proc.tau_from_time(t))) == pytest.approx(t, rel=1e-12)


@given(tau=st.floats(1e-10, 1e8))
def test_tau_round_trip_ou(tau):
    proc = get_process("ou")
    assert float(proc.tau_from_time(proc.time_from_tau(tau))) == pytest.approx(tau, rel=1e-12)


def test_tau_is_noise_to_signal_ratio():
    for name in ("ou", "ve"):
        proc = get_process(name)
        t = np.array([0.01, 0.5, 3.0])
        np.testing.assert_allclose(proc.tau_from_time(t),
                                   proc.noise_variance(t) / proc.signal_scale(t) ** 2, rtol=1e-13)


@pytest.mark.parametrize("schedule", ["linear", "li-yan", "cosine"])
def test_ddpm_steps_round_trip_and_match_alpha_bar(schedule):
    proc = Process("ddpm", schedule=schedule, T=1000)
    steps = np.arange(1, 1001, dtype=float)
    abar = np.cumprod(1 - proc.betas)
    one_minus_abar = -np.expm1(np.cumsum(np.log1p(-proc.betas)))  # no cancellation at small k
    np.testing.assert_allclose(proc.tau_from_time(steps), one_minus_abar / abar, rtol=1e-12)
    np.testing.assert_allclose(proc.time_from_tau(proc.tau_from_time(steps)), steps, rtol=1e-10)
    np.testing.assert_allclose(proc.signal_scale(steps), np.sqrt(abar), rtol=1e-10)


def test_linear_schedule_endpoints():
    betas = linear_betas(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)


def test_li_yan_schedule_definition():
    T, c0, c1 = 500, 2.0, 4.0
    betas = li_yan_betas(T, c0, c1)
    rate = c1 * np.log(T) / T
    assert betas[0] == pytest.approx(T ** -c0)
    t = np.arange(1, T)
    np.testing.assert_allclose(betas[1:], rate * np.minimum(T ** -c0 * (1 + rate) ** t, 1.0))


@pytest.mark.parametrize("bad", [
    lambda: get_process("vp"),
    lambda: get_process("ou").tau_from_time(-1.0),
    lambda: get_process("ve").tau_from_time(0.0),
    lambda: get_process("ou").time_from_tau(0.0),
    lambda: make_betas("li-yan", T=4),  # beta >= 1 for such a short chain
    lambda: Process("ddpm", T=1000).tau_from_time(0.5),
])
def test_bad_input_names_the_parameter(bad):
    with pytest.raises(ParameterError) as info:
        bad()
    assert "allowed" in str(info.value)
