"""support/allocator.py: glibc keeps large blocks out of its heap once told (issue 22, peak RSS).

Run in a child process: the allocator's settings are the process's. glibc's own count of its mmapped
blocks (mallinfo2().hblks) says where a block went; on a libc without mallinfo2 the test is skipped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import subprocess
import sys

import pytest

CHILD = r"""
import ctypes, ctypes.util, sys
from watchdog.support.allocator import keep_large_blocks_out_of_the_heap

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]

def mmapped_after_malloc(size):
    before = libc.mallinfo2().hblks
    p = libc.malloc(size)
    during = libc.mallinfo2().hblks
    libc.free(p)
    return during - before

# glibc raises its threshold to the size of a freed mmapped block: a 4 MiB block freed, and the next
# 256 KiB blocks come from the heap.
libc.free(libc.malloc(4 * 1024 * 1024))
heap = mmapped_after_malloc(256 * 1024)
told = keep_large_blocks_out_of_the_heap()
libc.free(libc.malloc(4 * 1024 * 1024))  # no longer moves the thresholds
heap_top = libc.mallinfo2().keepcost  # the free memory atop the heap
libc.free(libc.malloc(300 * 1024))  # from that free top: glibc maps only when the heap must grow
trimmed = libc.mallinfo2().keepcost < 256 * 1024  # the new trim threshold gave it back on that free
after = mmapped_after_malloc(256 * 1024)
print(heap, int(told), after, int(heap_top >= 300 * 1024), int(trimmed))
"""


def test_a_large_block_is_mmapped_again_once_told() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("not glibc 2.33 or later: no mallinfo2 to see where a block went")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    heap, told, after, top_was_large, trimmed = map(int, out.stdout.split())
    assert heap == 0  # glibc's own behaviour, which the daemon changes
    assert told == 1
    assert top_was_large == 1  # the 256 KiB freed before sat atop the heap...
    assert trimmed == 1  # ...and went back at the next free once the trim threshold is fixed
    assert after == 1  # the same 256 KiB request is its own mapping now, returned whole on free
