"""A one-year Connect backfill from S3 to S3 (moto server), unsharded and with --shard.

usage: backfill_s3.py --cxlake BIN --work DIR [--shards N] [--latency-ms MS]
Generates a year of 30-minute queue reports (17,520 files x 20 queues), uploads them to a moto
S3 bucket, then times `cxlake run --from/--to` over the year: once against moto as it is (the
server's own speed is the ceiling: one Python process on the same cores), then with MS of
latency added to every S3 request (what a real S3 round trip costs) one file at a time
(`--concurrency 1`), with the default concurrency, and as N concurrent shards. Checks that every
lake holds the same Parquet bytes.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import pathlib
import subprocess
import sys
import time

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

HERE = pathlib.Path(__file__).resolve().parent


class QuietHandler(MotoRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # 17,520 uploads and GETs per run
        pass


class LatencyMotoServer(ThreadedMotoServer):
    """moto with a settable delay before each request is served (threads sleep concurrently)."""

    latency_s = 0.0

    def _server_entry(self) -> None:
        app = DomainDispatcherApplication(create_backend_app)

        def delayed(environ, start_response):
            if self.latency_s:
                time.sleep(self.latency_s)
            return app(environ, start_response)

        self._server = make_server(self._ip_address, self._port, delayed, True, request_handler=QuietHandler)
        self._server_ready_event.set()
        self._server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cxlake", required=True)
    parser.add_argument("--work", type=pathlib.Path, required=True)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=10.0)
    args = parser.parse_args()
    year = args.work.resolve() / "year"
    if not year.exists():
        subprocess.run([sys.executable, HERE / "gen_connect.py", "year", year], check=True)
    server = LatencyMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    for bucket in ("reports", "lake-moto", "lake-serial", "lake-whole", "lake-sharded"):
        s3.create_bucket(Bucket=bucket)
    files = sorted(year.glob("*.csv"))
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda p: s3.put_object(Bucket="reports", Key=f"q/{p.name}", Body=p.read_bytes()), files))
    print(f"uploaded {len(files):,} reports in {time.perf_counter() - started:.1f} s")
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "CXLAKE_LOG": "warn",
           "CXLAKE_SOURCE_URL": "s3://reports/q/"}
    window = ["--from", "2023-01-01", "--to", "2023-12-31"]
    job = str(HERE / "jobs" / "connect-bench.toml")

    def backfill(lake: str, *extra: str) -> float:
        started = time.perf_counter()
        subprocess.run([args.cxlake, "run", job, *window, *extra], env={**env, "CXLAKE_LAKE_URL": lake},
                       check=True, capture_output=True)
        return time.perf_counter() - started

    raw = backfill("s3://lake-moto/cx")
    server.latency_s = args.latency_ms / 1000
    serial = backfill("s3://lake-serial/cx", "--concurrency", "1")
    whole = backfill("s3://lake-whole/cx")

    started = time.perf_counter()
    shards = [subprocess.Popen([args.cxlake, "run", job, *window, "--shard", f"{i}/{args.shards}"],
                               env={**env, "CXLAKE_LAKE_URL": "s3://lake-sharded/cx"}, stdout=subprocess.DEVNULL)
              for i in range(args.shards)]
    assert all(p.wait() == 0 for p in shards)
    sharded = time.perf_counter() - started
    server.latency_s = 0.0

    def parquet(bucket):
        out = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="cx/connect_queue_interval/"):
            for o in page.get("Contents", []):
                out[o["Key"]] = o["ETag"]
        return out

    lakes = [parquet(f"lake-{name}") for name in ("moto", "serial", "whole", "sharded")]
    same = all(lake == lakes[0] for lake in lakes) and len(lakes[0]) == 365
    server.stop()
    print(f"one year from S3 (moto), {len(files):,} files -> {len(lakes[0])} partitions:")
    print(f"  moto as it is, --concurrency 32 (default): {raw:.1f} s (the server is the ceiling)")
    print(f"  with {args.latency_ms:g} ms per S3 request: --concurrency 1 {serial:.1f} s; --concurrency 32 {whole:.1f} s "
          f"({serial / whole:.1f}x); {args.shards} concurrent shards of 32 {sharded:.1f} s ({serial / sharded:.1f}x)")
    print(f"  identical partitions in every lake: {same}")
    if not same:
        sys.exit("the lakes differ")


if __name__ == "__main__":
    main()
