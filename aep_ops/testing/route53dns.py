"""A DNS server for tests that answers TXT queries with what a moto Route 53 hosted zone holds.

Why it exists: pebble validates dns-01 by resolving ``_acme-challenge.NAME`` TXT through the one
DNS server it is given (``-dnsserver``). With real Route 53 that would be the public DNS; here
there is no real Route 53, and challtestsrv only serves what its own management API was told.
So this server reads the hosted zone through the moto server's Route 53 API *at query time*
(a boto3 client of the test's own moto account, set with ``serve``): pebble validates exactly
what aep-ops wrote to Route 53, and a value aep-ops forgot to write, wrote malformed or removed
too early makes validation fail as it would in production.

Answers: TXT from the zone (NOERROR and no answer when the name has no TXT record; SERVFAIL
when no zone is being served or Route 53 cannot be read, so a wrong setup fails loudly), A
127.0.0.1 for every name (http-01 then reaches a test's server on the loopback), and an empty
NOERROR for AAAA and everything else. UDP and TCP on 127.0.0.1, one port from ``free_port``.
``start`` returns once a real query is answered over both; ``stop`` shuts both servers down and
joins their threads.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
import time
from typing import Any

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from aep_ops.testing.ports import free_port

HOST = "127.0.0.1"
LOOPBACK_TTL = 1  # answers of a test server: nobody should cache them
TCP_IDLE_SECONDS = 5  # a TCP client that goes quiet is dropped, so stop() never waits on it


class Route53DnsServer:
    """UDP+TCP DNS on ``HOST:port`` serving the TXT records of one Route 53 hosted zone."""

    def __init__(self) -> None:
        self.port = free_port()
        self._zone: tuple[Any, str] | None = None  # (route53 client, zone id) read at query time
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []

    @property
    def address(self) -> str:
        """``HOST:PORT``, as pebble's ``-dnsserver`` takes it."""
        return f"{HOST}:{self.port}"

    def serve(self, route53: Any, zone_id: str | None) -> None:
        """Answer TXT queries from hosted zone ``zone_id`` read with ``route53`` (a boto3 client of
        the test's moto account); ``serve(None, None)`` answers SERVFAIL again."""
        self._zone = (route53, zone_id) if route53 is not None and zone_id else None

    def start(self, timeout: float = 10) -> Route53DnsServer:
        try:
            for server_class, handler in ((_TcpServer, _tcp_handler), (_UdpServer, _udp_handler)):
                server = server_class((HOST, self.port), handler(self._answer))
                thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                          name=f"route53dns-{server_class.__name__}", daemon=True)
                thread.start()
                self._servers.append(server)
                self._threads.append(thread)
            self._wait_until_answering(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Shut both servers down (only those serving: shutdown() of one never started would block)."""
        for server in self._servers:
            server.shutdown()
            server.server_close()  # joins the request threads (block_on_close)
        for thread in self._threads:
            thread.join(timeout=10)
        self._servers, self._threads = [], []

    def _wait_until_answering(self, timeout: float) -> None:
        query = dns.message.make_query("ready.route53dns.test.", "A")
        deadline = time.monotonic() + timeout
        while True:
            try:
                udp = dns.query.udp(query, HOST, port=self.port, timeout=1)
                tcp = dns.query.tcp(query, HOST, port=self.port, timeout=1)
                if all(HOST in rrset.to_text() for answer in (udp, tcp) for rrset in answer.answer):
                    return
            except (OSError, dns.exception.DNSException):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"route53 test DNS on {self.address} did not answer within {timeout:g}s")
            time.sleep(0.05)  # poll interval of the readiness condition, not a wait in itself

    def _answer(self, wire: bytes) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # not DNS: say nothing, as a real server would
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if not query.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response.to_wire()
        question = query.question[0]
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, LOOPBACK_TTL, "IN", "A", HOST))
        elif question.rdtype == dns.rdatatype.TXT:
            try:
                found = self._txt(question.name)
            except Exception:  # noqa: BLE001 (moto unreachable, zone gone: the resolver sees SERVFAIL)
                found = None
                response.set_rcode(dns.rcode.SERVFAIL)
            if found is not None:
                response.answer.append(found)
        return response.to_wire()

    def _txt(self, qname: dns.name.Name) -> dns.rrset.RRset | None:
        """The TXT rrset Route 53 holds for ``qname`` now (None: no such record). Route 53's values
        are in DNS presentation form (``"v1"``, ``"a" "b"``): parsed as such, never re-quoted."""
        if self._zone is None:
            raise LookupError("no hosted zone served")
        route53, zone_id = self._zone
        for page in route53.get_paginator("list_resource_record_sets").paginate(HostedZoneId=zone_id):
            for record in page["ResourceRecordSets"]:
                if record["Type"] == "TXT" and dns.name.from_text(record["Name"]) == qname:
                    values = [r["Value"] for r in record.get("ResourceRecords", [])]
                    return dns.rrset.from_text_list(qname, int(record.get("TTL", LOOPBACK_TTL)), "IN", "TXT", values)
        return None


class _UdpServer(socketserver.ThreadingUDPServer):
    daemon_threads = False
    block_on_close = True


class _TcpServer(socketserver.ThreadingTCPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True  # a restart on the same port is not blocked by TIME_WAIT


def _udp_handler(answer: Any) -> type[socketserver.BaseRequestHandler]:
    class UdpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            reply = answer(data)
            if reply is not None:
                sock.sendto(reply, self.client_address)

    return UdpHandler


def _tcp_handler(answer: Any) -> type[socketserver.BaseRequestHandler]:
    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            conn: socket.socket = self.request
            conn.settimeout(TCP_IDLE_SECONDS)
            try:
                while True:  # RFC 7766: several length-prefixed queries per connection
                    header = _read_exactly(conn, 2)
                    if header is None:
                        return
                    wire = _read_exactly(conn, struct.unpack("!H", header)[0])
                    reply = answer(wire) if wire is not None else None
                    if reply is None:
                        return
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except OSError:  # the client went away or idled out
                return

    return TcpHandler


def _read_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
