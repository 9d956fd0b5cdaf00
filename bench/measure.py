"""Run one command and print its wall time, CPU time (user + system) and peak RSS as JSON.

A separate small process on purpose: Linux carries a process's peak RSS across fork and exec, so
a child forked from the (large) benchmark driver would report the driver's memory as its own.
"""

import json
import os
import sys
import time

started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"seconds": time.perf_counter() - started, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                  "max_rss_mb": usage.ru_maxrss / 1024, "code": os.waitstatus_to_exitcode(status)}))
