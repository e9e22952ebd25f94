#!/usr/bin/env python3
"""Weighs the stored document field by field: what each field costs Elasticsearch on disk and in CPU.

Reads event documents in the shape every template version reads as (`auditctl export --format
ndjson`, or the `ndjson` export of the API: one document per line, with event.id) from standard
input, and bulk-loads them into one scratch index per variant on the node at --es: contrib's
bodymap document (the specification's fields only, under our mapping), template version 3, each
change of version 4 alone, and version 4 as a whole. Per variant it prints the node's CPU per
document (bulk, refreshes and the merges they cause, until none runs) and the primary store per
document once the index is merged to one segment. Run it on a quiet node; CPU varies from run to
run by about 10%, bytes by under 1%, so --rounds repeats every variant.

    auditctl export --team 1000 --format ndjson > /tmp/docs.ndjson   # and more teams, appended
    python3 bench/docweight.py --es http://127.0.0.1:9200 < /tmp/docs.ndjson

docs/document.md ("Version 4") has the figures of 2026-12-04 and the sample they came from.
"""
import argparse
import copy
import json
import re
import sys
import threading
import time
import urllib.error
import urllib.request

BODY = ["action", "team_id", "actor", "targets", "access_route", "remote_addr", "user_agent", "metadata"]
MAX_ID = 512


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--es", default="http://127.0.0.1:9200")
    ap.add_argument("--mapping", default="internal/document/testdata/event-mappings.v3.json")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default="", help="weigh only the variants whose name matches this regular expression")
    a = ap.parse_args()
    es = ES(a.es)
    docs = [json.loads(line) for line in sys.stdin if line.strip()]
    if not docs:
        sys.exit("no documents on standard input")
    v3 = json.load(open(a.mapping))
    print(f"{len(docs)} documents")
    for _ in range(a.rounds):
        for name, transform, mapping, settings, routing in variants(v3):
            if not re.search(a.only, name):
                continue
            cpu, size = es.weigh(name, docs, transform, mapping, settings, routing)
            print(f"{name:44s} ES CPU µs/doc {cpu:6.1f}   bytes/doc {size:6.1f}", flush=True)


def variants(v3):
    """(name, document transform, mapping, index settings, routed) of every variant."""
    unrouted = copy.deepcopy(v3)
    unrouted.pop("_routing", None)

    def mapped(*changes):
        m = copy.deepcopy(v3)
        for c in changes:
            c(m["properties"])
        return m

    def drop(*paths):
        def t(d):
            for p in paths:
                head, _, leaf = p.partition(".")
                if not leaf:
                    d.pop(head, None)
                elif isinstance(d.get(head), dict):
                    d[head].pop(leaf, None)
                    if not d[head]:
                        d.pop(head)
            return d
        return t

    def alias(path, target):
        def c(p):
            head, _, leaf = path.partition(".")
            p[head]["properties"][leaf] = {"type": "alias", "path": target}
        return c

    def source_only(p):
        p["event"]["properties"]["hash"] = {"type": "keyword", "index": False, "doc_values": False}

    def dv_only(p):  # fields read more than searched: doc values, no index
        for head, leaf in (("event", "ingested"), ("source", "ip"), ("user", "email"), ("service", "name"), ("audit", "action_known")):
            p[head]["properties"][leaf]["index"] = False

    def unmapped(*paths):
        def c(p):
            for path in paths:
                head, _, leaf = path.partition(".")
                if leaf:
                    p[head]["properties"].pop(leaf, None)
                    if not p[head]["properties"]:
                        p.pop(head)
                else:
                    p.pop(head, None)
        return c

    def id_in_id(d):  # event.id only where the _id cannot carry it
        if len(d["team_id"]) + 1 + len(d["event"]["id"]) <= MAX_ID:
            d["event"].pop("id")
        return d

    def both(*ts):
        def t(d):
            for f in ts:
                d = f(d)
            return d
        return t

    def user_email_only(d):
        u = d.get("user", {})
        for k in ("id", "name"):
            u.pop(k, None)
        if not u:
            d.pop("user", None)
        return d

    derived = drop("event.action", "event.kind", "event.outcome", "event.category", "organization", "related",
                   "audit.action_description")
    v4_doc = both(derived, user_email_only, id_in_id)
    ecs = (alias("event.action", "action"), alias("organization.id", "team_id"), alias("user.id", "actor.id"),
           unmapped("event.kind", "event.outcome", "event.category", "user.name", "related", "audit.action_description"))
    v4_map = mapped(*ecs, source_only, dv_only)
    best = {"codec": "best_compression"}
    by_team = {"sort.field": ["team_id", "@timestamp"], "sort.order": ["asc", "desc"]}
    same = lambda d: d  # noqa: E731
    body = lambda d: {k: d[k] for k in BODY if k in d}  # noqa: E731

    def floor(*keep):  # contrib's body plus only what every audit log needs: its time, then keep
        def t(d):
            out = {"@timestamp": d["@timestamp"], **body(d)}
            for k in keep:
                out.setdefault("event", {})[k] = d["event"][k]
            return out
        return t

    return [
        ("floor: body, @timestamp, routed", floor(), v4_map, {}, True),
        ("floor: body, @timestamp, routed, event.hash", floor("hash"), v4_map, {}, True),
        ("contrib bodymap (default codec)", lambda d: {k: d[k] for k in BODY if k in d}, unrouted, {}, False),
        ("contrib bodymap (best_compression)", lambda d: {k: d[k] for k in BODY if k in d}, unrouted, best, False),
        ("version 3", same, v3, {}, True),
        ("v3, ECS copies aliased or derived", both(derived, user_email_only), mapped(*ecs), {}, True),
        ("v3, event.hash in _source only", same, mapped(source_only), {}, True),
        ("v3, event.id only where the _id cannot", id_in_id, v3, {}, True),
        ("v3, doc values only where read more than searched", same, mapped(dv_only), {}, True),
        ("v3, best_compression", same, v3, best, True),
        ("v3, sorted by team_id, @timestamp", same, v3, by_team, True),
        ("version 4", v4_doc, v4_map, {}, True),
        ("version 4, best_compression", v4_doc, v4_map, best, True),
        ("version 4, sorted by team_id, @timestamp", v4_doc, v4_map, by_team, True),
        ("version 4, best_compression, sorted", v4_doc, v4_map, {**best, **by_team}, True),
    ]


class ES:
    def __init__(self, url):
        self.url = url.rstrip("/")

    def req(self, method, path, body=None, ndjson=None):
        data = ndjson if ndjson is not None else (json.dumps(body).encode() if body is not None else None)
        ctype = "application/x-ndjson" if ndjson is not None else "application/json"
        r = urllib.request.Request(self.url + path, method=method, data=data, headers={"content-type": ctype})
        try:
            with urllib.request.urlopen(r, timeout=1800) as res:
                return json.load(res)
        except urllib.error.HTTPError as e:
            if method == "DELETE" and e.code == 404:
                return {}
            raise SystemExit(f"{method} {path}: {e.code} {e.read()[:500]!r}")

    def cpu_ms(self):
        s = self.req("GET", "/_nodes/stats/process")
        return sum(n["process"]["cpu"]["total_in_millis"] for n in s["nodes"].values())

    def weigh(self, name, docs, transform, mapping, settings, routing):
        index = "docweight-" + "".join(c if c.isalnum() else "-" for c in name.lower())
        self.req("DELETE", "/" + index)
        st = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s", **settings}
        self.req("PUT", "/" + index, {"settings": {"index": st}, "mappings": mapping})
        lines = []
        for d in docs:
            team, eid = d["team_id"], d["event"]["id"]
            action = {"_id": f"{team}:{eid}"}
            if routing:
                action["routing"] = team
            lines.append(json.dumps({"create": action}))
            lines.append(json.dumps(transform(copy.deepcopy(d)), separators=(",", ":"), ensure_ascii=False))
        chunks = [("\n".join(lines[i:i + 10000]) + "\n").encode() for i in range(0, len(lines), 10000)]
        before = self.cpu_ms()

        def worker(k):  # two connections, 5,000 documents a request, as auditproof's raw replay
            for j in range(k, len(chunks), 2):
                r = self.req("POST", f"/{index}/_bulk?filter_path=errors,items.*.error", ndjson=chunks[j])
                if r.get("errors"):
                    raise SystemExit(f"{name}: {json.dumps(r)[:500]}")

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.req("POST", f"/{index}/_refresh")
        while self.req("GET", f"/{index}/_stats/merge")["_all"]["primaries"]["merges"]["current"]:
            time.sleep(0.2)
        cpu = (self.cpu_ms() - before) * 1000 / len(docs)
        self.req("POST", f"/{index}/_forcemerge?max_num_segments=1")
        size = self.req("GET", f"/{index}/_stats/store")["_all"]["primaries"]["store"]["size_in_bytes"] / len(docs)
        self.req("DELETE", "/" + index)
        return cpu, size


if __name__ == "__main__":
    main()
