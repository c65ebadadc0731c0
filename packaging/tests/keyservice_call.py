"""Run inside the services image (no shell there): start starlock-keyservice, call GetDataKey.

Starts the key service on a Unix socket with the master secret and salt given as hex on the command
line (test values of the kms vectors), asks for each data key id, stops it with SIGTERM and prints
one JSON object: the keys (hex), the exit status, the uid it ran as and its log lines.
Usage: python keyservice_call.py MASTER_SECRET_HEX SALT_HEX ID[,ID...]
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import grpc

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc


def main() -> int:
    secret, salt, ids = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2]), sys.argv[3].split(",")
    work = tempfile.mkdtemp()
    for name, data in (("mastersecret", secret), ("salt", salt)):
        fd = os.open(os.path.join(work, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, data)
        os.close(fd)
    sock = os.path.join(work, "keyservice", "ks.sock")
    proc = subprocess.Popen(
        [
            "starlock-keyservice",
            "--unix",
            sock,
            "-v",
            "2",
            "--shutdown-grace",
            "5",
            "--master-secret",
            os.path.join(work, "mastersecret"),
            "--salt",
            os.path.join(work, "salt"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not os.path.exists(sock) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    keys = {}
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        for key_id in ids:
            reply = stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id=key_id, length=32), timeout=30)
            keys[key_id] = reply.data_key.hex()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    print(json.dumps({"keys": keys, "rc": proc.returncode, "uid": os.getuid(), "log": err + out}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
