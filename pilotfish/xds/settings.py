"""Settings of the xDS server, passed in explicitly by the composition root."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pilotfish.api.mesh import DEFAULT_XDS_ADDRESS
from pilotfish.xds.push import DebounceSettings


@dataclass(frozen=True)
class TlsSettings:
    """Serve xDS over TLS with this certificate; with ``ca_file``, verify client certificates."""

    cert_file: Path
    key_file: Path
    ca_file: Path | None = None
    #: Refuse clients without a certificate signed by ``ca_file``.
    require_client_cert: bool = False


@dataclass(frozen=True)
class XdsSettings:
    #: ``host:port`` to listen on; port 0 picks a free one (see ``DiscoveryServer.port``).
    address: str = DEFAULT_XDS_ADDRESS
    tls: TlsSettings | None = None
    debounce: DebounceSettings = field(default_factory=DebounceSettings)
    #: How long a push step waits for Envoy's ACK before it goes on (seconds). Envoy holds a CDS
    #: ACK until clusters are warm, at most its ``initial_fetch_timeout`` (15 s by default).
    ack_timeout: float = 20.0
    #: Run the generator in a worker thread, keeping the event loop (ACKs, other streams)
    #: responsive while a slow generator runs. Measured with 100 Delta clients and a ~1 ms
    #: generator: initial sync 0.64 s vs 0.58 s on the loop, pushes ~1.35x slower; worth it
    #: once generation takes longer than a few milliseconds per proxy.
    generate_in_thread: bool = True
    #: Snapshots generated at the same time (bounds memory during a push to many proxies).
    max_concurrent_generations: int = 4
    #: Connection throttle (Istio's push throttle for connection storms): at most this many
    #: new streams get their initial configuration at once; the others wait, first come
    #: first served, until one has ACKed its listeners and routes (or ``ack_timeout``
    #: passed). Keeps the event loop (ACKs, pushes, the HTTP API) responsive and the memory of
    #: in-flight initial responses bounded when a thousand proxies reconnect together.
    max_concurrent_connects: int = 16
    #: ``control_plane.identifier`` in responses (shows in Envoy's config dump).
    control_plane_id: str = "pilotfish"
    #: gRPC message size limit for requests from proxies (bytes).
    max_receive_message_bytes: int = 16 * 1024 * 1024
    #: Maximum age of a connection (seconds; 0: unlimited). gRPC then sends GOAWAY, and the
    #: proxy's next connection may go to another replica, which spreads proxies again over
    #: replicas after one came back (Istio: 30 min).
    max_connection_age: float = 1800.0
    #: After GOAWAY, how long open streams (an ADS stream, a certificate request) may go on
    #: before the connection is closed (Istio: 10 s).
    max_connection_age_grace: float = 10.0

    def grpc_options(self) -> list[tuple[str, int]]:
        """The gRPC server options of the maximum connection age (none when unlimited)."""
        if self.max_connection_age <= 0:
            return []
        return [
            ("grpc.max_connection_age_ms", max(1, int(self.max_connection_age * 1000))),
            ("grpc.max_connection_age_grace_ms", int(self.max_connection_age_grace * 1000)),
        ]
