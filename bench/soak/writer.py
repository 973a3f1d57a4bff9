#!/usr/bin/env python3
"""Runs inside the gateway namespace: API write load for the soak benchmark.

  writer.py TOKEN TOTAL WRITERS PROGRESS_FILE STOP_FILE

WRITERS threads, each on its own keep-alive connection to the local API, cycle through
POST (create an ingress rule), PUT (change its ports) and DELETE, so the document stays small
while the store, the audit trail and the reconcile loop see every write. Once TOTAL writes
have been answered, PROGRESS_FILE.done is created; the writers go on (the load stays steady
while the other loads finish) until STOP_FILE exists. Every second "<answered> <failed>" is
written to PROGRESS_FILE; at the end one line on stdout:
"<answered> <failed> <seconds> <status counts> <POSTs answered with another or no rule>".
"""
import http.client
import json
import os
import sys
import threading
import time

HOST, PORT = "127.0.0.1", 7780


class Writer:
    def __init__(self, token, k, shared):
        self.token = token
        self.k = k
        self.shared = shared
        self.conn = None

    def call(self, method, path, body=None):
        """One request; reconnects once if the keep-alive connection was closed."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": "Bearer " + self.token, "Content-Type": "application/json"}
        for attempt in (0, 1):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                return r.status, payload
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
                if attempt == 1:
                    return 0, b""
        return 0, b""

    def count(self, status):
        with self.shared["lock"]:
            self.shared["answered"] += 1
            self.shared["status"][status] = self.shared["status"].get(status, 0) + 1
            if not 200 <= status < 300:
                self.shared["failed"] += 1

    def created_id(self, body, port):
        """The id of the rule this writer's POST created. A build before the fix of concurrent
        creates may answer null or another writer's rule: then the rule is looked up by its
        port, so that it is still deleted and the document stays small."""
        try:
            rule = json.loads(body)
            if rule["ports"] == str(port):
                return rule["id"]
        except (ValueError, TypeError, KeyError):
            pass
        with self.shared["lock"]:
            self.shared["wrong_answers"] += 1
        st, listing = self.call("GET", "/v1/ingress-rules")
        if st == 200:
            for rule in json.loads(listing):
                if rule.get("ports") == str(port):
                    return rule["id"]
        return None

    def run(self):
        # Distinct ports per writer, so that two writers never create the same rule.
        i = 0
        while True:
            port = 20000 + 2000 * self.k + i % 1999
            i += 1
            if self.shared["stop"]:
                return
            st, body = self.call("POST", "/v1/ingress-rules",
                                 {"protocol": "tcp", "ports": str(port), "description": "soak"})
            self.count(st)
            if st != 201:
                continue
            rid = self.created_id(body, port)
            if rid is None:
                continue
            st, _ = self.call("PUT", "/v1/ingress-rules/" + rid,
                              {"protocol": "tcp", "ports": str(port + 1), "description": "soak"})
            self.count(st)
            st, _ = self.call("DELETE", "/v1/ingress-rules/" + rid)
            self.count(st)


def main():
    token, total, writers, progress, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
    shared = {"lock": threading.Lock(), "answered": 0, "failed": 0, "status": {}, "stop": False,
              "wrong_answers": 0}
    threads = [threading.Thread(target=Writer(token, k, shared).run, daemon=True)
               for k in range(writers)]
    t0 = time.time()
    for t in threads:
        t.start()

    def report():
        with shared["lock"]:
            line = "%d %d" % (shared["answered"], shared["failed"])
            reached = shared["answered"] >= total
        with open(progress + ".tmp", "w") as f:
            f.write(line + "\n")
        # renamed into place: the sampler never reads a half-written file
        os.replace(progress + ".tmp", progress)
        if reached and not os.path.exists(progress + ".done"):
            open(progress + ".done", "w").close()
        if os.path.exists(stop):
            shared["stop"] = True

    while any(t.is_alive() for t in threads):
        report()
        time.sleep(1)
    report()
    statuses = ",".join("%s:%d" % kv for kv in sorted(shared["status"].items()))
    print(shared["answered"], shared["failed"], "%.1f" % (time.time() - t0), statuses,
          shared["wrong_answers"])


if __name__ == "__main__":
    main()
