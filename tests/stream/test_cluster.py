"""Two `pulse run` processes as one Bytewax cluster (-i/-a) on partitioned Redis Streams: exact analytics."""

from __future__ import annotations

import os
import subprocess

import orjson
import redis
from pulse_testkit import PULSE, free_ports, make_mentions, pulse, redis_source

from connectors.redis_streams import append_records, mark_eof
from stream.keys import Keys
from stream.metrics import totals


def test_two_processes_count_every_record_once(r: redis.Redis, redis_url: str, key_prefix: str) -> None:
    rows = make_mentions(600)
    append_records(r, key_prefix, [orjson.dumps(x) for x in rows], partitions=4)
    mark_eof(r, key_prefix)
    addresses = ";".join(f"127.0.0.1:{p}" for p in free_ports(2))
    env = dict(os.environ, REDIS_URL=redis_url, PULSE_PREFIX=key_prefix, PULSE_CRM="false")
    procs = [subprocess.Popen([*PULSE, "run", "--source", redis_source(redis_url, key_prefix, partitions=4),
                               "--bounded", "-i", str(i), "-a", addresses], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 0, stderr
    t = totals(r, Keys(key_prefix))
    assert (t["offered"], t["accepted"], t["duplicates"], t["dead_letters"]) == (len(rows), len(rows), 0, 0)
    doc = orjson.loads(pulse("metrics", "--json", redis_url=redis_url, prefix=key_prefix).stdout)
    customers = [x for x in rows if not x.get("from_brand")]
    for brand in ("acme", "globex"):
        mine = [x for x in customers if x["brand"] == brand]
        replied = {x["in_reply_to"] for x in rows if x.get("from_brand") and x["brand"] == brand}
        assert doc["brands"][brand]["mentions"] == len(mine)
        assert doc["brands"][brand]["first_response"]["count"] == len(replied)


def test_cluster_flags_are_checked(redis_url: str, key_prefix: str) -> None:
    for args, needle in ((["-i", "0"], "--process-id and --addresses go together"),
                         (["-i", "2", "-a", "127.0.0.1:1;127.0.0.1:2"], "is not an index of the 2 --addresses"),
                         (["-i", "0", "-a", "localhost"], "expected host:port")):
        proc = pulse("run", "--source", "sim", "--limit", "1", *args, redis_url=redis_url, prefix=key_prefix,
                     check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
