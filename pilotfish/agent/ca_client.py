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
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta

import grpc

from pilotfish.agent.settings import HostPort
from pilotfish.identity import SignedCertificate
from pilotfish.identity.ca_grpc import request_certificate
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
    ) -> None:
        if not addresses:
            raise ValueError("the CA client needs at least one control-plane address")
        self.addresses = tuple(addresses)
        self._channel_for = channel_for
        self._channels: dict[HostPort, grpc.aio.Channel] = {}
        self._token = token
        self._timeout = timeout
        self._rounds = max(1, rounds)
        self._backoff = backoff
        self._rng = rng or random.Random()
        self._sleep = sleep
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
                        self._channel(address), self._token(), csr_pem, ttl, timeout=self._timeout
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

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), {}
        for channel in channels:
            await channel.close()


__all__ = ["RETRY_ON_ANOTHER", "FailoverCaClient", "jittered"]
