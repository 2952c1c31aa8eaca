"""The agent's client of the CA when the control plane has several replicas.

Every replica signs certificates (they share one CA directory), so a CSR can go to any. The
client keeps one gRPC channel per replica and sends each request to the replica that
answered last; when that one is unreachable (``UNAVAILABLE``, ``DEADLINE_EXCEEDED``) it tries
the next, in the order given, after a short jittered pause, for a few rounds with jittered
exponential backoff between them. A refusal by a CA (a bad token, a denied identity) is the
answer of every replica and is raised at once. When every round fails, the last error is
raised and the :class:`~pilotfish.identity.SecretManager` retries with its own backoff.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import timedelta

import grpc

from pilotfish.agent.settings import HostPort
from pilotfish.identity import SignedCertificate
from pilotfish.identity.ca_grpc import request_certificate, watch_trust_bundle
from pilotfish.identity.errors import CertificateRequestError

log = logging.getLogger("pilotfish.agent")

#: gRPC codes meaning "this replica did not answer": try another.
RETRY_ON_ANOTHER = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


def jittered(seconds: float, rng: random.Random, spread: float = 0.5) -> float:
    """``seconds`` moved by up to ``spread`` of itself either way."""
    return max(0.0, seconds * (1.0 + spread * rng.uniform(-1.0, 1.0)))


class FailoverCaClient:
    """A :data:`~pilotfish.identity.secret_manager.CertificateFetcher` over several replicas."""

    def __init__(
        self,
        addresses: Sequence[HostPort],
        channel_for: Callable[[HostPort], grpc.aio.Channel],
        token: Callable[[], str],
        *,
        timeout: float = 10.0,
        rounds: int = 3,
        backoff: float = 0.5,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        node: str = "",
    ) -> None:
        if not addresses:
            raise ValueError("the CA client needs at least one control-plane address")
        self.addresses = tuple(addresses)
        self._channel_for = channel_for
        self._channels: dict[HostPort, grpc.aio.Channel] = {}
        #: Channels replaced by :meth:`set_channel_factory`, closed by :meth:`close`.
        self._stale: list[grpc.aio.Channel] = []
        self._token = token
        self._timeout = timeout
        self._rounds = max(1, rounds)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._sleep = sleep
        #: The node id sent with each request (labels this agent in a root rotation's progress).
        self.node = node
        #: Index of the replica that answered last (tried first).
        self.current = 0

    def _channel(self, address: HostPort) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = self._channel_for(address)
        return channel

    async def __call__(self, csr_pem: str, ttl: timedelta) -> SignedCertificate:
        last: CertificateRequestError | None = None
        count = len(self.addresses)
        for round_number in range(self._rounds):
            if round_number:
                await self._sleep(jittered(self._backoff * 2 ** (round_number - 1), self._rng))
            for step in range(count):
                index = (self.current + step) % count
                address = self.addresses[index]
                if step:
                    await self._sleep(jittered(0.05, self._rng))
                try:
                    signed = await request_certificate(
                        self._channel(address),
                        self._token(),
                        csr_pem,
                        ttl,
                        timeout=self._timeout,
                        node=self.node,
                    )
                except CertificateRequestError as exc:
                    if exc.code not in RETRY_ON_ANOTHER:
                        raise
                    last = exc
                    if count > 1:
                        log.warning("CA at %s did not answer (%s); trying another", address, exc)
                    continue
                if index != self.current:
                    log.info("certificate signed by the control plane at %s", address)
                self.current = index
                return signed
        assert last is not None
        raise last

    async def watch(self, report: dict[str, str]) -> AsyncIterator[str]:
        """The CA's trust bundle, now and after each change, from the replica that answered
        last (see :func:`~pilotfish.identity.ca_grpc.watch_trust_bundle`); the next replica
        is tried when this stream fails."""
        address = self.addresses[self.current]
        try:
            async for bundle in watch_trust_bundle(self._channel(address), self._token(), report):
                yield bundle
        except CertificateRequestError as exc:
            if exc.code in RETRY_ON_ANOTHER:
                self.current = (self.current + 1) % len(self.addresses)
            raise

    def set_channel_factory(self, channel_for: Callable[[HostPort], grpc.aio.Channel]) -> None:
        """New channels from ``channel_for`` (e.g. with new roots); the open ones are closed by
        the next :meth:`close`."""
        self._channel_for = channel_for
        self._stale += self._channels.values()
        self._channels = {}

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        channels, self._stale = channels + self._stale, []
        for channel in channels:
            await channel.close()


__all__ = ["RETRY_ON_ANOTHER", "FailoverCaClient", "jittered"]
