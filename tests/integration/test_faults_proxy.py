"""The fault proxy (faultproxy.py) proven by clients we did not write: boto3 reads its injected
answers as S3's and Glue's own errors (botocore parses the error Code and maps Glue's to the
modelled exception classes), sees resets, cut bodies and timeouts as the transport errors they
are, and with its standard retries gets through a faulty proxy; the Salesforce answers carry
Salesforce's error bodies; and every fault kind is drawn from a seeded RNG, bounded."""

from __future__ import annotations

import boto3
import botocore.config
import botocore.exceptions
import pytest
import requests

from conftest import DEMO_CREDENTIALS, REGION
from faultproxy import FaultProxy


def client(service: str, url: str, *, attempts: int = 1, read_timeout: float = 5):
    config = botocore.config.Config(retries={"total_max_attempts": attempts, "mode": "standard"},
                                    read_timeout=read_timeout, connect_timeout=2)
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id="testing",
                        aws_secret_access_key="testing", config=config)


@pytest.fixture
def bucket(aws):
    name = "fault-proof"
    aws["s3"].create_bucket(Bucket=name)
    aws["s3"].put_object(Bucket=name, Key="object.txt", Body=b"x" * 4096)
    return name


def test_boto3_reads_injected_s3_and_glue_errors_as_the_services_errors(moto_server, bucket):
    with FaultProxy(moto_server, seed=1, rate=1.0, max_faults=1000, faults=("error",)) as proxy:
        s3, glue = client("s3", proxy.url), client("glue", proxy.url)
        s3_codes, glue_codes = set(), set()
        for _ in range(20):
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                s3.get_object(Bucket=bucket, Key="object.txt")
            error = caught.value.response
            s3_codes.add((error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"]))
            with pytest.raises(botocore.exceptions.ClientError) as caught:
                glue.get_databases()
            # botocore maps the code to the exception class of Glue's service model
            assert type(caught.value).__name__ == caught.value.response["Error"]["Code"]
            glue_codes.add((caught.value.response["ResponseMetadata"]["HTTPStatusCode"],
                            caught.value.response["Error"]["Code"]))
        assert s3_codes == {(503, "SlowDown"), (500, "InternalError")}
        assert glue_codes == {(400, "ThrottlingException"), (500, "InternalServiceException"),
                              (400, "ConcurrentModificationException")}
        assert isinstance(caught.value, tuple(getattr(glue.exceptions, c) for _, c in glue_codes))


def test_boto3_sees_resets_cut_bodies_and_slow_answers(moto_server, bucket):
    with FaultProxy(moto_server, seed=2, rate=1.0, max_faults=1000, faults=("reset_before",)) as proxy:
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            client("s3", proxy.url).list_objects_v2(Bucket=bucket)
    # the answer is lost, the write was applied
    with FaultProxy(moto_server, seed=3, rate=1.0, max_faults=1000, faults=("reset_after",)) as proxy:
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            client("s3", proxy.url).put_object(Bucket=bucket, Key="applied.txt", Body=b"applied")
    assert client("s3", moto_server).get_object(Bucket=bucket, Key="applied.txt")["Body"].read() == b"applied"
    with FaultProxy(moto_server, seed=4, rate=1.0, max_faults=1000, faults=("cut",)) as proxy:
        body = client("s3", proxy.url).get_object(Bucket=bucket, Key="object.txt")["Body"]
        with pytest.raises(botocore.exceptions.ResponseStreamingError):
            body.read()
    with FaultProxy(moto_server, seed=5, rate=1.0, max_faults=1000, faults=("slow",), slow_seconds=2) as proxy:
        with pytest.raises(botocore.exceptions.ReadTimeoutError):
            client("s3", proxy.url, read_timeout=0.5).head_object(Bucket=bucket, Key="object.txt")
        assert proxy.injected[("slow", "HEAD")] == 1


def test_boto3_standard_retries_get_through_the_bounded_faults(moto_server, bucket):
    # at most 4 faults in all, 5 attempts per call: every call gets through
    with FaultProxy(moto_server, seed=6, rate=0.3, max_faults=4, faults=("error", "reset_before")) as proxy:
        s3 = client("s3", proxy.url, attempts=5)
        for _ in range(20):
            assert s3.get_object(Bucket=bucket, Key="object.txt")["Body"].read() == b"x" * 4096
        assert proxy.total == 4


def test_seeded_choices_repeat(moto_server, bucket):
    def run(seed):
        with FaultProxy(moto_server, seed=seed, rate=0.5, max_faults=5, faults=("error", "reset_before")) as proxy:
            s3 = client("s3", proxy.url, attempts=1)
            for _ in range(12):
                try:
                    s3.head_object(Bucket=bucket, Key="object.txt")
                except (botocore.exceptions.ClientError, botocore.exceptions.ConnectionClosedError):
                    pass
            return [line.split()[0] for line in proxy.log], proxy.requests

    first, again, other = run(7), run(7), run(8)
    assert first == again and len(first[0]) == 5
    assert first != other


def test_salesforce_error_bodies_and_rewritten_instance_url(emulator):
    # simple-salesforce insists on https:// for instance_url and the proxy speaks plain HTTP, so
    # the Salesforce side is read with requests, as Salesforce's REST error format documents it.
    with FaultProxy(emulator.url, service="salesforce", seed=9, rate=0.0, max_faults=1000) as proxy:
        token = requests.post(f"{proxy.url}/services/oauth2/token", data={
            "grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
            "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
            "password": DEMO_CREDENTIALS["Password"]}, timeout=30).json()
        # the emulator's instance_url is rewritten to the proxy, so the client's calls go through it
        assert token["instance_url"] == proxy.url
        query = {"url": f"{proxy.url}/services/data/v66.0/query", "params": {"q": "SELECT Id FROM Account"},
                 "headers": {"Authorization": f"Bearer {token['access_token']}"}, "timeout": 30}
        assert requests.get(**query).json()["done"] is True
        proxy.rate, proxy.faults = 1.0, ("error",)
        seen = set()
        for _ in range(12):
            answer = requests.get(**query)
            seen.add((answer.status_code, answer.json()[0]["errorCode"]))
        assert seen == {(503, "SERVER_UNAVAILABLE"), (403, "REQUEST_LIMIT_EXCEEDED")}
