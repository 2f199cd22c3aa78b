"""Does a MongoDB-compatible server keep what it acknowledged as journaled when it is killed?

Starts the server on a fresh data directory, inserts 100-document batches with write concern
{w: 1, j: true} from two threads, SIGKILLs the server, starts it again on the same data and
counts the acknowledged documents that are gone. Repeats; prints one line a round.

    python durability_probe.py SERVER_BINARY [ROUNDS] [SECONDS]

The binary is started as `SERVER_BINARY --host 127.0.0.1 --port P --storage-path DIR`
(SecantusDB's flags). MongoDB itself keeps every such write (its journal is flushed before a
j: true write is acknowledged).
"""

import socket
import subprocess
import sys
import tempfile
import threading
import time

from pymongo import MongoClient, WriteConcern
from pymongo.errors import PyMongoError


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start(binary, port, data):
    return subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", str(port), "--storage-path", data],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def client(port):
    mongo = MongoClient(f"mongodb://127.0.0.1:{port}", serverSelectionTimeoutMS=10000)
    mongo.admin.command("ping")
    return mongo


def round_trip(binary, seconds):
    port, data = free_port(), tempfile.mkdtemp(prefix="durability-probe-")
    server = start(binary, port, data)
    logs = client(port).probe.get_collection("logs", write_concern=WriteConcern(w=1, j=True))
    acknowledged, stop = [], threading.Event()

    def write(writer):
        batch = 0
        while not stop.is_set():
            documents = [{"_id": f"{writer}-{batch}-{i}", "m": "x" * 200} for i in range(100)]
            batch += 1
            try:
                logs.insert_many(documents, ordered=False)
                acknowledged.extend(document["_id"] for document in documents)
            except PyMongoError:
                return

    writers = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    for writer in writers:
        writer.start()
    time.sleep(seconds)
    server.kill()
    server.wait()
    stop.set()
    for writer in writers:
        writer.join()
    server = start(binary, port, data)
    present = {document["_id"] for document in client(port).probe.logs.find({}, {"_id": 1})}
    server.kill()
    server.wait()
    return len(acknowledged), sum(1 for id in acknowledged if id not in present)


def main():
    binary = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 3.0
    losing = 0
    for number in range(1, rounds + 1):
        acknowledged, lost = round_trip(binary, seconds)
        losing += lost > 0
        print(f"round {number}: {acknowledged} acknowledged (j: true), {lost} gone after SIGKILL")
    print(f"{losing} of {rounds} rounds lost acknowledged writes")


if __name__ == "__main__":
    main()
