"""URLs in messages never carry a password, and a parameter never holds one literally (fashionrec.storage)."""

import pytest

from fashionrec.storage import literal_password, redact_urls, refuse_literal_passwords


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("redis://:hunter2@redis.feast:6379/0", "redis://:***@redis.feast:6379/0"),
        ("got 'postgresql://feast:hunter2@db/registry' instead", "got 'postgresql://feast:***@db/registry' instead"),
        ("redis://:hun@ter/2@h:1", "redis://:***@h:1"),  # raw "@" and "/" in the password: hidden whole
        ("redis:/:hunter2@h:1", "redis:/:***@h:1"),  # a mistyped scheme
        ("h:6379,db=0,password=hunter2", "h:6379,db=0,password=***"),  # Feast's connection string
        ("redis://:${FEAST_REDIS_PASSWORD}@h:1", "redis://:${FEAST_REDIS_PASSWORD}@h:1"),  # a reference is no secret
        ("http://127.0.0.1:8080/v2/models/fashionrec/infer", "http://127.0.0.1:8080/v2/models/fashionrec/infer"),
        ("https://alice@mlflow.example and s3://bucket/key", "https://alice@mlflow.example and s3://bucket/key"),
    ],
)
def test_every_url_password_in_a_message_is_hidden(text: str, shown: str) -> None:
    assert redact_urls(text) == shown


def test_only_env_references_pass_as_passwords() -> None:
    assert literal_password("redis://:hunter2@h:1") and literal_password("x redis://:${A}@h:1 https://u:pw@h")
    assert not literal_password("redis://:${FEAST_REDIS_PASSWORD}@h:1")
    assert not literal_password("redis://:%24%7BFEAST_REDIS_PASSWORD%7D@h:1")
    assert not literal_password("redis://h:1") and not literal_password("/mnt/catalog")
    refuse_literal_passwords({"online_store": "redis://:${FEAST_REDIS_PASSWORD}@h:1", "epochs": 3})
    with pytest.raises(ValueError, match="registry_uri holds a literal password") as refused:
        refuse_literal_passwords({"registry_uri": "https://alice:hunter2@mlflow.example"})
    assert "hunter2" not in str(refused.value)
