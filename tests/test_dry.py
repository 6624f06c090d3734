"""The DRY sampler against a straightforward reference written from its definition
(llama.cpp / text-generation-webui): a token that would extend a repeat of the context's tail of
L >= allowed_length tokens loses multiplier * base^(L - allowed_length) from its logit; repeats
neither contain nor are continued by a sequence breaker, and count at most 50 tokens."""

import numpy as np
import pytest

from r1lite.errors import InvalidArgument
from r1lite.sampling import Sampler, SamplingParams, dry_breaker_ids

VOCAB = 12


def reference_dry(logits, history, multiplier, base, allowed, last_n, breakers, context):
    x = np.array(logits, dtype=np.float64)
    window = context if last_n == -1 else last_n
    if multiplier == 0 or window == 0:
        return x
    h = list(history)[-window:] if window else list(history)
    n = len(h)
    for t in range(len(x)):
        if t in breakers:
            continue
        best = 0
        # every earlier place where t followed: how many tokens before it equal the tail
        for nxt in range(1, n):
            if h[nxt] != t:
                continue
            length = 0
            while (length < 50 and nxt - 1 - length >= 0
                   and h[nxt - 1 - length] == h[n - 1 - length]
                   and h[n - 1 - length] not in breakers):
                length += 1
            best = max(best, length)
        if best >= allowed:
            x[t] -= multiplier * base ** (best - allowed)
    return x


def dry_logits(logits, history, breakers=(), context=None, **kw):
    params = SamplingParams(temperature=0, **kw)
    s = Sampler(params, frozenset(breakers), context)
    x = np.array(logits, dtype=np.float64)
    s.apply_dry(x, history)
    return x


HAND_MADE = [
    # a repeated "1 2 3": after "1 2", 3 is penalized by 0.8 * 1.75^0
    ([1, 2, 3, 4, 1, 2], (), {3: 0.8}),
    # longer repeat: "5 1 2 3" then "5 1 2" -> 3 extends a repeat of 3: 0.8 * 1.75
    ([5, 1, 2, 3, 0, 5, 1, 2], (), {3: 0.8 * 1.75}),
    # the repeat is cut by a breaker (9): only "1 2" counts
    ([9, 1, 2, 3, 6, 9, 1, 2], (9,), {3: 0.8}),
    # a breaker as the token that would follow is never penalized
    ([1, 2, 9, 4, 1, 2], (9,), {}),
    # a breaker as the last token: nothing is penalized
    ([1, 2, 9, 1, 2, 9], (9,), {}),
    # a repeat of 1 token is below allowed_length 2
    ([1, 3, 4, 1], (), {}),
]


@pytest.mark.parametrize("history,breakers,want", HAND_MADE)
def test_hand_made_histories(history, breakers, want):
    logits = np.linspace(-1, 1, VOCAB)
    got = dry_logits(logits, history, breakers, dry_multiplier=0.8)
    expect = logits.copy()
    for t, p in want.items():
        expect[t] -= p
    np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)
    ref = reference_dry(logits, history, 0.8, 1.75, 2, -1, set(breakers), None)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", range(40))
def test_random_histories_match_the_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 160))
    alphabet = int(rng.integers(2, VOCAB))
    # repetitive histories: random pieces copied back in, so long repeats occur
    h = list(rng.integers(0, alphabet, size=n))
    for _ in range(3):
        a = int(rng.integers(0, len(h)))
        b = int(rng.integers(a, min(len(h), a + 60) + 1))
        h += h[a:b]
    breakers = set(rng.choice(VOCAB, size=int(rng.integers(0, 3)), replace=False).tolist())
    kw = dict(dry_multiplier=float(rng.uniform(0.1, 2)), dry_base=float(rng.uniform(1, 3)),
              dry_allowed_length=int(rng.integers(1, 5)),
              dry_penalty_last_n=int(rng.choice([-1, 0, 10, 50, 1000])))
    context = int(rng.integers(20, 400))
    logits = rng.standard_normal(VOCAB)
    got = dry_logits(logits, h, breakers, context=context, **kw)
    ref = reference_dry(logits, h, kw["dry_multiplier"], kw["dry_base"], kw["dry_allowed_length"],
                        kw["dry_penalty_last_n"], breakers, context)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-9)


def test_matches_count_at_most_50_tokens():
    h = list(range(3, 11)) * 20  # long periodic history
    got = dry_logits(np.zeros(VOCAB), h, dry_multiplier=1.0, dry_base=1.1)
    assert got[3] == pytest.approx(-(1.1 ** 48))
    assert np.count_nonzero(got) == 1


def test_dry_changes_the_choice_and_is_off_by_default():
    logits = np.zeros(VOCAB)
    logits[3], logits[4] = 2.0, 1.0
    h = [1, 2, 3, 0, 1, 2]
    assert Sampler(SamplingParams(temperature=0))(logits, h) == 3
    assert Sampler(SamplingParams(temperature=0, dry_multiplier=1.5))(logits, h) == 4
    assert Sampler(SamplingParams(temperature=0, dry_multiplier=1.5,
                                  dry_penalty_last_n=0))(logits, h) == 3
    assert Sampler(SamplingParams(temperature=0, dry_multiplier=1.5,
                                  dry_penalty_last_n=3))(logits, h) == 3  # repeat outside the window


def test_breakers_from_the_tokenizer():
    from r1lite.tokenizer import Tokenizer
    from tiny_model import assets_dir

    tok = Tokenizer.from_folder(assets_dir())
    ids = dry_breaker_ids(tok, ("\n", ":", "\"", "*"))
    for text in ("\n", "\n\n", ":", " \"", "**"):
        assert all(t in ids for t in tok.encode(text)), text
    for text in (" hello", " world", "3"):
        assert not any(t in ids for t in tok.encode(text)), text
    assert dry_breaker_ids(tok, ("\n", ":", "\"", "*")) is ids  # computed once


@pytest.mark.parametrize("kw,param", [
    (dict(dry_multiplier=-1), "dry_multiplier"), (dict(dry_multiplier=float("nan")), "dry_multiplier"),
    (dict(dry_base=0.5), "dry_base"), (dict(dry_base="x"), "dry_base"),
    (dict(dry_allowed_length=0), "dry_allowed_length"), (dict(dry_allowed_length=1.5), "dry_allowed_length"),
    (dict(dry_penalty_last_n=-5), "dry_penalty_last_n"),
    (dict(dry_sequence_breakers=["\n", ""]), "dry_sequence_breakers"),
    (dict(dry_sequence_breakers="\n"), "dry_sequence_breakers")])
def test_nonsense_parameters_are_refused(kw, param):
    with pytest.raises(InvalidArgument) as e:
        SamplingParams(**kw).check()
    assert e.value.param == param
