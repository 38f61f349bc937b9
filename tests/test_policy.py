"""`sm policy`: the least-privilege IAM documents, valid JSON with no wildcards."""

from __future__ import annotations

import json
from typing import Any

KEY_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(cli, *args: str) -> dict[str, Any]:
    result = cli("policy", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def actions(document: dict[str, Any]) -> set[str]:
    return {a for s in document["Statement"] for a in as_list(s["Action"])}


def assert_no_wildcards(document: dict[str, Any]) -> None:
    assert document["Version"] == "2012-10-17"
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
        for resource in as_list(statement.get("Resource", [])):
            assert resource != "*" and not resource.endswith(":::*"), resource


def test_identity_policy_grants_only_what_the_archiver_uses(cli) -> None:
    document = policy(cli, "s3://acme-archive/messages/")
    assert_no_wildcards(document)
    assert actions(document) == {
        "s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket",
        "s3:GetBucketPublicAccessBlock", "s3:GetBucketPolicyStatus", "s3:GetBucketAcl",
        "s3:GetEncryptionConfiguration", "s3:GetBucketVersioning",
        "s3:GetBucketObjectLockConfiguration"}
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["WriteAndReadArchive"]["Resource"] == "arn:aws:s3:::acme-archive/messages/*"
    assert by_sid["DeleteConnectionTestObjects"] == {
        "Sid": "DeleteConnectionTestObjects", "Effect": "Allow", "Action": "s3:DeleteObject",
        "Resource": "arn:aws:s3:::acme-archive/messages/_sm/*"}
    listing = by_sid["ListArchiveKeys"]
    assert listing["Resource"] == "arn:aws:s3:::acme-archive"
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["messages/*"]}}
    for statement in document["Statement"]:
        for resource in as_list(statement["Resource"]):
            assert resource.startswith("arn:aws:s3:::acme-archive")


def test_delete_is_granted_only_on_the_test_prefix(cli) -> None:
    document = policy(cli, "s3://acme-archive/")
    deletes = [s for s in document["Statement"] if "s3:DeleteObject" in as_list(s["Action"])]
    assert [s["Resource"] for s in deletes] == ["arn:aws:s3:::acme-archive/_sm/*"]
    listing = next(s for s in document["Statement"] if s["Sid"] == "ListArchiveKeys")
    assert "Condition" not in listing  # the whole bucket is the archive


def test_kms_actions_appear_only_with_a_key(cli) -> None:
    assert not any(a.startswith("kms:") for a in actions(policy(cli, "s3://acme-archive/")))
    document = policy(cli, "s3://acme-archive/", "--kms-key-arn", KEY_ARN)
    assert_no_wildcards(document)
    kms = [s for s in document["Statement"] if s["Sid"] == "UseArchiveKey"]
    assert kms == [{"Sid": "UseArchiveKey", "Effect": "Allow",
                    "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": KEY_ARN}]


def test_retention_adds_put_object_retention(cli) -> None:
    assert "s3:PutObjectRetention" not in actions(policy(cli, "s3://acme-archive/"))
    document = policy(cli, "s3://acme-archive/", "--retention")
    assert "s3:PutObjectRetention" in actions(document)
    assert_no_wildcards(document)


def test_trust_policy_requires_the_external_id(cli) -> None:
    principal = "arn:aws:iam::444455556666:role/sm-runner"
    document = policy(cli, "s3://acme-archive/", "--trust", "--external-id", "ext-7f3a",
                      "--principal", principal)
    assert document == {"Version": "2012-10-17", "Statement": [{
        "Sid": "AssumeForArchiving", "Effect": "Allow", "Principal": {"AWS": principal},
        "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"sts:ExternalId": "ext-7f3a"}}}]}


def test_trust_without_external_id_is_a_usage_error(cli) -> None:
    result = cli("policy", "s3://acme-archive/", "--trust", "--principal",
                 "arn:aws:iam::444455556666:role/sm-runner")
    assert result.exit_code == 2
    assert "--external-id" in result.stderr


def test_policy_refuses_a_bad_key_arn_and_other_schemes(cli) -> None:
    bad_key = cli("policy", "s3://acme-archive/", "--kms-key-arn", "*")
    assert bad_key.exit_code == 2  # a bad value is a usage error (SPEC 8 "CLI")
    assert "'*' is not a KMS key ARN" in bad_key.stderr
    other = cli("policy", "gs://acme-archive/")
    assert other.exit_code == 2
    assert "unsupported scheme 'gs://'" in other.stderr
