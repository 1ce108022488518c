"""Run a cdul command in this process with its first store write held up, so that a test
can start a second command while the first holds the store's lock:

    python tests/slow_command.py MARKER SECONDS cdul-extract ARGS...

Before the command's first chunk or label-round write it creates MARKER (the lock is held
by then) and waits until MARKER.go exists (at most SECONDS); then it goes on as the command
would."""

import os
import sys
import time

from cdul.store.rounds import RoundStore
from cdul.store.zstore import Store

marker, seconds, command, args = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:]


def held_up(method):
    def wrapper(*a, **k):
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            deadline = time.monotonic() + seconds
            while not os.path.exists(marker + ".go") and time.monotonic() < deadline:
                time.sleep(0.05)
        return method(*a, **k)

    return wrapper


Store.write_chunk = held_up(Store.write_chunk)
RoundStore.begin_round = held_up(RoundStore.begin_round)
module = {"cdul-extract": "extract", "cdul-train": "train", "cdul-refine": "refine"}[command]
main = __import__(f"cdul.cli.{module}", fromlist=["main"]).main
sys.argv = [command, *args]
main()
