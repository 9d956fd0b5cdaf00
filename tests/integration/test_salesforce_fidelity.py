"""A third-party client, simple-salesforce (unmodified), against the emulator over HTTPS: its
REST query and Bulk 2.0 query return the records cxlake wrote to the lake. And the JWT bearer
flow with a freshly generated RSA key."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import time

import duckdb
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce import Salesforce

from conftest import DEMO_CREDENTIALS, export_job, start_emulator

FIELDS = ["Id", "Name", "AnnualRevenue", "NumberOfEmployees", "BillingCity", "IsDeleted", "SystemModstamp"]


def utc(text: str) -> dt.datetime:
    """REST `+0000` and Bulk `Z` datetimes alike."""
    return dt.datetime.strptime(text.replace("Z", "+0000"), "%Y-%m-%dT%H:%M:%S.%f%z")


def test_simple_salesforce_reads_what_cxlake_wrote(cx, tmp_path, monkeypatch):
    emu = start_emulator(tmp_path, tls=True)
    try:
        job = export_job(tmp_path, emu.url, objects=("Account",), api="bulk", mode="snapshot",
                         fields={"Account": FIELDS}, extra={"ca_file": str(emu.cert)})
        result = cx("run", job)
        assert result.code == 0, result
        lake = {r["id"]: r for r in duckdb.sql(
            f"select * from read_parquet('{tmp_path}/lake/sf_account_latest/*.parquet')").to_arrow_table().to_pylist()}

        # simple-salesforce logs in with its own URL scheme (https://<domain>.salesforce.com);
        # the documented way to use another host is a session id plus instance_url.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(emu.cert))
        token = requests.post(f"{emu.url}/services/oauth2/token", data={
            "grant_type": "password", "client_id": DEMO_CREDENTIALS["ConsumerKey"],
            "client_secret": DEMO_CREDENTIALS["ConsumerSecret"], "username": DEMO_CREDENTIALS["Username"],
            "password": DEMO_CREDENTIALS["Password"]}, timeout=30).json()
        sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version="66.0")
        soql = f"SELECT {', '.join(FIELDS)} FROM Account"

        rest = sf.query_all(soql)["records"]
        pages = list(sf.bulk2.Account.query(soql, max_records=20))
        assert len(pages) >= 3, "the Bulk result should span several pages"
        bulk = [row for page in pages for row in csv.DictReader(io.StringIO(page))]

        assert {r["Id"] for r in rest} == {r["Id"] for r in bulk} == set(lake)
        for r in rest:
            mine = lake[r["Id"]]
            assert mine["name"] == r["Name"]
            assert mine["annual_revenue"] == r["AnnualRevenue"]
            assert mine["number_of_employees"] == r["NumberOfEmployees"]
            assert mine["billing_city"] == r["BillingCity"]
            assert mine["system_modstamp"] == utc(r["SystemModstamp"])
        for r in bulk:
            mine = lake[r["Id"]]
            assert mine["name"] == (r["Name"] or None)
            assert mine["annual_revenue"] == (float(r["AnnualRevenue"]) if r["AnnualRevenue"] else None)
            assert mine["system_modstamp"] == utc(r["SystemModstamp"])
    finally:
        emu.stop()


def test_jwt_assertions_salesforce_accepts(cxlake_bin, tmp_path):
    """No stricter than Salesforce: the sf CLI's `exp` in milliseconds and an `aud` with a
    trailing slash log in; a wrong key, an expired `exp` or another audience do not."""
    import jwt

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "jwt-public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    emu = start_emulator(tmp_path, "--jwt-public-key", str(public))
    try:
        def grant(signing_key, **claims):
            body = {"iss": DEMO_CREDENTIALS["ConsumerKey"], "sub": DEMO_CREDENTIALS["Username"],
                    "aud": "https://login.salesforce.com", "exp": int(time.time()) + 180, **claims}
            assertion = jwt.encode(body, signing_key, algorithm="RS256")
            return requests.post(f"{emu.url}/services/oauth2/token", timeout=30, data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion})

        assert grant(key).status_code == 200
        assert grant(key, exp=int(time.time() * 1000) + 180_000).status_code == 200
        assert grant(key, aud="https://login.salesforce.com/").status_code == 200
        for refused in (grant(key, exp=int(time.time()) - 3600), grant(key, aud="https://example.com"),
                        grant(rsa.generate_private_key(public_exponent=65537, key_size=2048))):
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant", refused.text
    finally:
        emu.stop()


def test_jwt_bearer_flow_with_a_generated_key(cx, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
    public = tmp_path / "jwt-public.pem"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    emu = start_emulator(tmp_path, "--jwt-public-key", str(public))
    try:
        creds = tmp_path / "jwt.json"
        creds.write_text(json.dumps({"ConsumerKey": DEMO_CREDENTIALS["ConsumerKey"], "PrivateKey": private_pem}))
        job = export_job(tmp_path, emu.url, objects=("User",), auth="jwt", credentials=f"file:{creds}",
                         extra={"username": DEMO_CREDENTIALS["Username"]})
        result = cx("run", job)
        assert result.code == 0, result
        # Ten seeded users and the integration user the token belongs to.
        assert "sf_user 11 rows" in result.stdout, result

        # Another key is refused with Salesforce's error, and the key never shows up in the output.
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
        creds.write_text(json.dumps({"ConsumerKey": DEMO_CREDENTIALS["ConsumerKey"], "PrivateKey": other}))
        refused = cx("run", job)
        assert refused.code == 1 and "invalid_grant" in refused.stderr, refused
        assert "PRIVATE KEY" not in refused.output
    finally:
        emu.stop()
