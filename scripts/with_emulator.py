"""Run commands while the built-in Salesforce emulator serves: `make demo` uses it.

usage: with_emulator.py <cxlake> [emulator flags...] -- <command> [args...] [-- <command> ...]

Starts `cxlake emulator --port 0`, exports CXLAKE_SALESFORCE_LOGIN_URL=<its URL> to each command,
runs them in order (stopping at the first failure), prints the emulator's API call counts, and
stops it.
"""

import json
import os
import subprocess
import sys
import urllib.request


def main() -> int:
    cxlake, *rest = sys.argv[1:]
    groups: list[list[str]] = [[]]
    for arg in rest:
        if arg == "--":
            groups.append([])
        else:
            groups[-1].append(arg)
    emulator_flags, commands = groups[0], [g for g in groups[1:] if g]
    emulator = subprocess.Popen([cxlake, "emulator", "--port", "0", *emulator_flags], stdout=subprocess.PIPE, text=True)
    try:
        line = emulator.stdout.readline()
        if "listening on" not in line:
            print(f"the emulator did not start: {line!r}", file=sys.stderr)
            return 1
        url = line.strip().rsplit(" ", 1)[-1]
        print(f"Salesforce emulator at {url}")
        env = {**os.environ, "CXLAKE_SALESFORCE_LOGIN_URL": url}
        for command in commands:
            code = subprocess.call(command, env=env)
            if code != 0:
                return code
        with urllib.request.urlopen(f"{url}/__emulator/stats") as response:
            stats = json.load(response)
        calls = ", ".join(f"{name} {count}" for name, count in sorted(stats.items()) if name != "total")
        print(f"Salesforce API calls served by the emulator: {stats.get('total', 0)} ({calls})")
        for sobject in ("amazonconnect__AC_HistoricalQueueMetrics__c", "amazonconnect__AC_AgentPerformance__c"):
            with urllib.request.urlopen(f"{url}/__emulator/objects/{sobject}/records") as response:
                records = json.load(response)
            if records:
                print(f"Salesforce records in {sobject}: {len(records)}")
        return 0
    finally:
        emulator.terminate()
        emulator.wait()


if __name__ == "__main__":
    sys.exit(main())
