"""Child process for tests/test_storage.py: write records under one key until killed.

Usage: ``python _storage_writer.py DIRECTORY FIRST_COUNTER``.  Record ``n`` (from
FIRST_COUNTER on) is ``b"even:<n>:" + 4000 x`` for even ``n`` and ``b"odd:<n>:" + 9000 x``
for odd ``n``: two lengths, so a record torn between two writes cannot pass for either.
The loop is bounded (a minute, or a million records) so a lost child cannot run forever.
"""

from __future__ import annotations

import sys
import time

from pyclm.storage import FileStorage


def payload(n: int) -> bytes:
    if n % 2 == 0:
        return b"even:%d:" % n + b"x" * 4000
    return b"odd:%d:" % n + b"x" * 9000


def main() -> None:
    storage = FileStorage(sys.argv[1])
    first = int(sys.argv[2])
    stop = time.monotonic() + 60.0
    for n in range(first, first + 1_000_000):
        storage.write("membership", payload(n))
        if time.monotonic() > stop:
            break


if __name__ == "__main__":
    main()
