#!/usr/bin/env python3
"""Resident memory of a running gateway by mimalloc size class.

heaptrack cannot see mimalloc's allocations, and RSS alone does not say
what is resident. This reads mimalloc's page headers straight from the
process (/proc/PID/mem) and which 4 KiB pages are resident
(/proc/PID/pagemap), and prints, per block size: pages, blocks in use and
resident KiB (also divided by N, say the streams held open).

Written against mimalloc 3.3's `mi_page_t` (libmimalloc-sys 0.1.49, the
`v3` sources): thread id, free, used/capacity/reserved, flags, local_free,
thread_free, block_size, page_start. Another mimalloc may lay it out
differently. Needs root (pagemap frame bits are not needed, only presence).

Usage: benches/heap_by_size.py PID [N]
"""

import collections
import struct
import sys

PAGE = 4096
ARENA = 1 << 30
# Offsets 0..56 of mi_page_t: xthread_id, free, used, capacity, reserved,
# retire_expire, free_is_zero, local_free, xthread_free, block_size,
# page_start.
HEADER = struct.Struct("<QQHHHBBQQQQ")


def arenas(pid):
    """mimalloc reserves its arenas as 1 GiB anonymous mappings."""
    for line in open(f"/proc/{pid}/maps"):
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if end - start == ARENA and len(fields) == 5:
            yield start, end


def resident_pages(pid, start, end):
    with open(f"/proc/{pid}/pagemap", "rb") as pagemap:
        pagemap.seek(start // PAGE * 8)
        raw = pagemap.read((end - start) // PAGE * 8)
    return bytearray(
        (struct.unpack_from("<Q", raw, i * 8)[0] >> 63) & 1 for i in range(len(raw) // 8)
    )


def page_headers(mem, start, end, present):
    """Every mi_page_t in the arena's resident pages. Page metadata sits at
    the start of a page's first slice, or apart from it: scan every word."""
    found = {}
    for index, resident in enumerate(present):
        if not resident:
            continue
        mem.seek(start + index * PAGE)
        chunk = mem.read(PAGE)
        for offset in range(0, PAGE - HEADER.size, 8):
            (_, _, used, capacity, reserved, _, _, _, _, block_size,
             page_start) = HEADER.unpack_from(chunk, offset)
            if (8 <= block_size <= (4 << 20) and block_size % 8 == 0
                    and start <= page_start < end
                    and page_start % 16 == 0 and 0 < reserved
                    and used <= capacity <= reserved
                    and reserved * block_size <= (32 << 20)):
                found.setdefault(page_start, (block_size, reserved, used))
    return found


def main():
    pid = int(sys.argv[1])
    per = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    resident_kib = collections.Counter()
    pages = collections.Counter()
    used_blocks = collections.Counter()
    total = 0
    with open(f"/proc/{pid}/mem", "rb") as mem:
        for start, end in arenas(pid):
            present = resident_pages(pid, start, end)
            total += sum(present) * PAGE // 1024
            counted = bytearray(len(present))
            # In the order found: a header comes before the blocks of its
            # page, whose contents could pass for one.
            for page_start, (size, reserved, used) in page_headers(
                    mem, start, end, present).items():
                # From the page's first slice (its header) to its last block.
                first = (page_start - start) // 65536 * 16
                last = (page_start + reserved * size - start + PAGE - 1) // PAGE
                for i in range(first, min(last, len(present))):
                    if not counted[i]:
                        counted[i] = 1
                        resident_kib[size] += present[i] * PAGE // 1024
                pages[size] += 1
                used_blocks[size] += used
    print(f"resident in arenas: {total} KiB, in pages found: {sum(resident_kib.values())} KiB")
    print(f"{'block bytes':>12} {'pages':>6} {'blocks used':>12} {'resident KiB':>13} {'KiB per ' + str(per):>12}")
    for size, kib in resident_kib.most_common(25):
        print(f"{size:>12} {pages[size]:>6} {used_blocks[size]:>12} {kib:>13} {kib / per:>12.2f}")


if __name__ == "__main__":
    main()
