"""Sampling: greedy, each filter, reproducible seeds, and refusal of nonsense parameters."""

import numpy as np
import pytest

from r1lite.sampling import Sampler, SamplingParams, _top_p


def logits_of(probs):
    return np.log(np.asarray(probs, dtype=np.float64))


def frequencies(params, logits, n=4000):
    s = Sampler(params)
    counts = np.bincount([s(logits, []) for _ in range(n)], minlength=len(logits))
    return counts / n


def test_greedy_is_argmax():
    x = np.random.default_rng(0).standard_normal(1000)
    assert Sampler(SamplingParams(temperature=0))(x, []) == int(np.argmax(x))


def test_sampling_follows_softmax():
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    f = frequencies(SamplingParams(temperature=1.0, seed=1), logits_of(probs))
    np.testing.assert_allclose(f, probs, atol=0.03)


def test_temperature_sharpens():
    probs = np.array([0.5, 0.3, 0.2])
    f = frequencies(SamplingParams(temperature=0.5, seed=2), logits_of(probs))
    want = probs ** 2 / (probs ** 2).sum()
    np.testing.assert_allclose(f, want, atol=0.03)


def test_top_k_top_p_min_p_cut_the_tail():
    probs = np.array([0.4, 0.3, 0.2, 0.1])
    f = frequencies(SamplingParams(temperature=1.0, top_k=2, seed=3), logits_of(probs))
    assert f[2] == f[3] == 0 and abs(f[0] - 4 / 7) < 0.03
    f = frequencies(SamplingParams(temperature=1.0, top_p=0.65, seed=4), logits_of(probs))
    assert f[2] == f[3] == 0 and abs(f[0] - 4 / 7) < 0.03  # 0.4 + 0.3 reaches 0.65
    f = frequencies(SamplingParams(temperature=1.0, min_p=0.3, seed=5), logits_of(probs))
    assert f[3] == 0 and f[2] > 0  # 0.1 < 0.3 * 0.4 <= 0.2


def reference_top_p(probs, top_p):
    order = np.argsort(-probs, kind="stable")
    keep = int(np.searchsorted(np.cumsum(probs[order]), top_p)) + 1
    out = np.zeros_like(probs)
    out[order[:keep]] = probs[order[:keep]]
    return out


@pytest.mark.parametrize("sharpness", [0.0, 0.5, 3.0])
def test_top_p_partial_sort_equals_full_sort(sharpness):
    """Over a large vocabulary only the head is sorted, falling back to a full sort when the head
    does not reach top_p (sharpness 0 is a flat distribution)."""
    x = np.random.default_rng(8).standard_normal(50_000) * sharpness
    probs = np.exp(x - x.max())
    probs /= probs.sum()
    for top_p in (0.1, 0.5, 0.95):
        np.testing.assert_array_equal(_top_p(probs, top_p), reference_top_p(probs, top_p))


def test_repetition_penalty_discourages_seen_tokens():
    x = np.array([2.0, 1.9, -1.0])
    s = Sampler(SamplingParams(temperature=0, repetition_penalty=1.5))
    assert s(x, [0]) == 1  # 2.0 / 1.5 < 1.9
    assert s(x, [2]) == 0


def test_seed_reproduces():
    x = np.random.default_rng(0).standard_normal(5000)
    a = [Sampler(SamplingParams(temperature=1.0, seed=7))(x, []) for _ in range(5)]
    s1, s2 = Sampler(SamplingParams(temperature=1.0, seed=7)), Sampler(SamplingParams(temperature=1.0, seed=7))
    assert [s1(x, []) for _ in range(20)] == [s2(x, []) for _ in range(20)]
    assert len(set(a)) == 1


def test_presence_and_frequency_penalties_count_generated_tokens():
    """OpenAI's rule: logit[t] -= presence * (count[t] > 0) + frequency * count[t], counted over
    the generated tokens only (the prompt's do not count)."""
    x = np.array([3.0, 2.2, 1.0, 0.5])
    s = Sampler(SamplingParams(temperature=0, presence_penalty=0.5, frequency_penalty=0.2))
    assert s(x, [0, 0, 0], generated=[]) == 0  # prompt tokens only
    assert s(x, [0], generated=[0]) == 0        # 3.0 - 0.7 = 2.3 > 2.2
    assert s(x, [0, 0], generated=[0, 0]) == 1  # 3.0 - 0.9 = 2.1 < 2.2
    neg = Sampler(SamplingParams(temperature=0, presence_penalty=-2.0))  # negative: encourages
    assert neg(np.array([1.0, 2.5]), [0], generated=[0]) == 0


def test_logit_bias_is_added_before_greedy_and_sampling():
    x = np.array([5.0, 0.0, -3.0])
    assert Sampler(SamplingParams(temperature=0, logit_bias={"2": 100}))(x, []) == 2
    assert Sampler(SamplingParams(temperature=0, logit_bias={0: -100}))(x, []) == 1
    s = Sampler(SamplingParams(temperature=1.0, seed=1, logit_bias={"1": 100}))
    assert {s(x, []) for _ in range(50)} == {1}


@pytest.mark.parametrize("bad", [dict(temperature=-0.1), dict(temperature=float("nan")),
                                 dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1), dict(top_k=2.5),
                                 dict(min_p=1.0), dict(min_p=-0.1), dict(repetition_penalty=0),
                                 dict(seed=-1), dict(seed="x"), dict(presence_penalty=2.5),
                                 dict(frequency_penalty=-3), dict(frequency_penalty="x"),
                                 dict(logit_bias={"1": 101}), dict(logit_bias={"x": 1}),
                                 dict(logit_bias={"-1": 1}), dict(logit_bias=[1])])
def test_nonsense_parameters_raise(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        Sampler(SamplingParams(**bad))


def test_logit_bias_ids_are_checked_against_the_vocabulary():
    with pytest.raises(ValueError, match="logit_bias") as e:
        SamplingParams(logit_bias={"10": 1}).check(vocab_size=10)
    assert e.value.param == "logit_bias"
    assert SamplingParams(logit_bias={"9": 1}).check(vocab_size=10).logit_bias == {9: 1.0}
