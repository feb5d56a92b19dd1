"""Card helpers: markdown tables that captions cannot break, Hub size buckets, recipe redaction, secret refusal."""

import pytest

from emocurate.publish.card import CardError, check_no_secrets, md_table, redact, size_category


def test_md_table_escapes_pipes_and_newlines():
    table = md_table(["a", "b"], [["x | y", "line\nbreak"], [None, 0.123456]])
    assert table.splitlines() == ["| a | b |", "|---|---|", "| x \\| y | line break |", "| - | 0.1235 |"]


@pytest.mark.parametrize("n, bucket", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (81_444, "10K<n<100K"),
                                       (118_102, "100K<n<1M"), (2_000_000_000, "n>1B")])
def test_size_category(n, bucket):
    assert size_category(n) == bucket


def test_redact_hides_secret_values_but_keeps_env_var_names():
    recipe = {"caption": {"api_key": "sk-123", "api_key_env": "OPENAI_API_KEY", "hf_token": None,
                          "endpoint": "http://127.0.0.1:8000/v1"}, "paths": [("a", 1)]}
    assert redact(recipe) == {"caption": {"api_key": "<redacted>", "api_key_env": "OPENAI_API_KEY", "hf_token": None,
                                          "endpoint": "http://127.0.0.1:8000/v1"}, "paths": [["a", 1]]}


def test_check_no_secrets_names_the_variable_not_the_value(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secretvalue12345")
    with pytest.raises(CardError) as err:
        check_no_secrets("a card that leaks hf_secretvalue12345")
    assert "HF_TOKEN" in str(err.value) and "hf_secretvalue12345" not in str(err.value)
    check_no_secrets("a clean card")
