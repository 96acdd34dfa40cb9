"""Every kept wrong a2 variant is caught by the hidden checks alone, for every grading secret tried; the correct
answers pass every hidden check (statistical ones included) for every secret tried.

The hidden checks are a fixed set of edge cases (one per bug class) plus random draws from the secret, so whether
a bug costs points must not depend on the term's secret. For each secret and each variant of tests/a2_variants.py,
the hidden calls of the cells the variant must fail are run on their own (the first failing case ends a call).
The initializer and training checks are statistical: their bands are many standard errors wide (see
course_utils/checks/a2_backprop_init.py), and here the solution and the differently written correct answers run
every hidden call under many secrets. Tables are printed (-s).

Secrets: 150 for the catch rates (``COURSE_CATCH_RATE_SECRETS``), 30 for the correct answers
(``COURSE_CORRECT_SECRETS``; the closing measurement used 200, about 6 minutes). They are fixed (derived from their index), so a failure can be reproduced.
"""

import hashlib
import os

import pytest
import torch

import a2_variants as v

SECRETS = int(os.environ.get("COURSE_CATCH_RATE_SECRETS", "150"))
CORRECT_SECRETS = int(os.environ.get("COURSE_CORRECT_SECRETS", "30"))
STATISTICAL = {"test_two_layer_training", "test_lecun_normal", "test_glorot_uniform", "test_kaiming_normal"}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny float64 references: one thread avoids waiting for the second core
    yield
    torch.set_num_threads(threads)


def _secrets(count: int, label: str) -> list[str]:
    drawn = [hashlib.sha256(f"{label} {i}".encode()).hexdigest()[:32] for i in range(count - 2)]
    return drawn + ["", "7"]  # the public default and a weak one


def test_every_kept_wrong_variant_is_caught_for_every_secret():
    rates = v.catch_rates(_secrets(SECRETS, "catch-rate"))
    print(f"\nshare of {SECRETS:,} grading secrets whose hidden checks catch each kept wrong variant:")
    for name, rate in rates.items():
        print(f"  {name:40s} {rate:7.1%}   ({', '.join(sorted(v.WRONG[name][1]))})")
    assert set(rates) == set(v.WRONG)
    assert {name: rate for name, rate in rates.items() if rate < 1} == {}


def test_correct_answers_pass_every_hidden_check_for_every_secret(monkeypatch):
    """The solution on every hidden call; the differently written initializers on theirs (every fourth secret)."""
    answers = {"solution": {}, **{name: replacements for name, replacements in v.CORRECT.items()
                                  if set(replacements) & {"lecun_normal", "glorot_uniform", "kaiming_normal"}}}
    failures = {}
    for index, secret in enumerate(_secrets(CORRECT_SECRETS, "correct")):
        monkeypatch.setenv("COURSE_GRADING_SEED", secret)
        for name, replacements in answers.items():
            if name != "solution" and index % 4:  # (the other initializers: every fourth secret)
                continue
            cells = v.CELLS if name == "solution" else v.cells_using(replacements)
            for grade_id, result in v.run_cells(replacements, only_hidden=True, cells=cells).items():
                if not result.passed:
                    failures[(name, secret, grade_id)] = result.failure
    print(f"\nthe solution under {CORRECT_SECRETS} secrets, {len(answers) - 1} other correct initializers under "
          f"{(CORRECT_SECRETS + 3) // 4}: {len(failures)} hidden failures")
    assert failures == {}
