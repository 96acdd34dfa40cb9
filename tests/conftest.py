"""Shared fixtures. Unit tests run headless (matplotlib's Agg backend) and in fast mode."""

from __future__ import annotations

import os
import socket

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def fast_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


@pytest.fixture
def default_mode(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


class NetworkBlocked(OSError):
    pass


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve or connect to a host outside this machine raises NetworkBlocked."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded_connect(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("::1", "localhost")) or \
                self.family == getattr(socket, "AF_UNIX", None):
            return real_connect(self, address)
        attempts.append(str(host))
        raise NetworkBlocked(f"network access blocked by the test: connect to {host}")

    def guarded_getaddrinfo(host, *args, **kwargs):
        if host in ("localhost", "127.0.0.1", "::1", None):
            return real_getaddrinfo(host, *args, **kwargs)
        attempts.append(str(host))
        raise NetworkBlocked(f"network access blocked by the test: resolve {host}")

    real_getaddrinfo = socket.getaddrinfo
    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", guarded_getaddrinfo)
    return attempts
