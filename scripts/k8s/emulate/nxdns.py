#!/usr/bin/env python3
"""A DNS stub that answers every query with NXDOMAIN, at once.

    nxdns.py ADDRESS [PORT]     (port 53 by default; needs root for it)

Docker's embedded DNS (127.0.0.11 in every container) answers the network aliases itself and
forwards every other name to the daemon's upstream servers. On a network without a route out,
the forward gets no answer and the client waits for its time-out (5 s a query, up to 20 s a
name with the search list and ndots:5). Kubernetes' CoreDNS is authoritative for cluster.local
and answers NXDOMAIN at once for a pod that does not exist (yet, or any more). Run as the
containers' upstream server (`docker run --dns ADDRESS`) on the test network's gateway address,
this stub gives the same quick "no such name", and no query leaves the machine.
"""

import signal
import socket
import struct
import sys


def answer(query: bytes) -> bytes | None:
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:  # a response, not a query
        return None
    # Skip the question section (QNAME labels, QTYPE, QCLASS) to echo it back.
    pos, end = 12, len(query)
    for _ in range(qdcount):
        while pos < end and query[pos] != 0:
            if query[pos] & 0xC0:
                return None
            pos += 1 + query[pos]
        pos += 5
    if pos > end:
        return None
    opcode = flags & 0x7800
    rd = flags & 0x0100
    rcode = 3 if opcode == 0 else 4  # NXDOMAIN, or NOTIMP for anything but a query
    out_flags = 0x8000 | opcode | rd | 0x0080 | rcode  # QR, opcode, RD, RA
    return struct.pack("!HHHHHH", ident, out_flags, qdcount, 0, 0, 0) + query[12:pos]


def main() -> None:
    address = sys.argv[1]
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 53
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((address, port))
    print(f"nxdns: answering NXDOMAIN on {address}:{port}", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        reply = answer(data)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
