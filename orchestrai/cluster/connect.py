"""Getting a Ray cluster: a local one bound to 127.0.0.1 only, or an existing one, failing fast.

Two things Ray does by default that we do not accept:

* A local instance binds its servers (GCS, raylet, workers) to the machine's outward interface or
  to every interface. Ray picks loopback only when it is told the machine is no cluster node
  (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`, read when ray is imported and inherited by the processes
  it starts) and the node address is 127.0.0.1; we set both.
* `ray.init(address=...)` on a dead address keeps retrying for minutes. We first open a TCP
  connection to the address (PROBE_TIMEOUT_S), then give `ray.init` CONNECT_TIMEOUT_S in a thread.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

from ..errors import OrchestraiError

PROBE_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 60.0
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 6379


class RayUnavailable(OrchestraiError):
    exit_code = 2


def require_ray() -> None:
    """Fail early, without importing it (that costs a second), when Ray is not installed."""
    try:
        found = importlib.util.find_spec("ray") is not None
    except (ValueError, AttributeError):  # a broken or blocked `ray` in sys.modules
        found = False
    if not found:
        raise _not_installed()


def _not_installed() -> RayUnavailable:
    return RayUnavailable("--executor ray needs Ray, which is not installed", hint="pip install 'orchestrai[ray]'")


def import_ray(*, local: bool = False) -> Any:
    """`ray`, or an error naming the extra that installs it. `local`: for a loopback-only instance."""
    if local:  # before the import: ray reads it into its constants then
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "RAY_AUTH_MODE" not in os.environ and "ray" not in sys.modules and _have_token():
        # A cluster started with a token (Ray's default) refuses a driver that does not send it,
        # and a driver sends it only in token mode: without this it would retry until our timeout.
        # Only before the import: Ray's core reads the mode once, and a later change confuses it.
        os.environ["RAY_AUTH_MODE"] = "token"
    try:
        import ray
    except ImportError:
        raise _not_installed() from None
    return ray


def _have_token() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")) \
        or (Path.home() / ".ray" / "auth_token").is_file()


def start_local(num_cpus: int | None = None) -> Any:
    """Start (or reuse) a Ray instance on this machine whose every server listens on 127.0.0.1 only."""
    ray = import_ray(local=True)
    if ray.is_initialized():
        return ray
    _stay_on_loopback()
    ray.init(num_cpus=num_cpus, _node_ip_address=LOOPBACK, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return ray


def connect(address: str, *, probe_timeout_s: float = PROBE_TIMEOUT_S,
            connect_timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
    """Join the cluster at `address` (`host:port` of its head, or `ray://host:port` for Ray Client)."""
    host, port = split_address(address)
    ray = import_ray(local=is_loopback(host))
    try:
        with socket.create_connection((host, port), timeout=probe_timeout_s):
            pass
    except OSError as exc:
        raise unreachable(address, exc.strerror or str(exc) or type(exc).__name__) from None
    if ray.is_initialized():
        return ray
    if is_loopback(host):  # else Ray swaps 127.0.0.1 for this machine's outward address, and finds nothing
        _stay_on_loopback()
    failure: list[BaseException] = []

    def init() -> None:
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=init, name="ray-connect", daemon=True)
    thread.start()
    thread.join(connect_timeout_s)
    if thread.is_alive():
        raise unreachable(address, f"no Ray cluster answered within {connect_timeout_s:g} s")
    if failure:
        raise unreachable(address, str(failure[0]).strip().splitlines()[0] if str(failure[0]).strip()
                          else type(failure[0]).__name__)
    return ray


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _stay_on_loopback() -> None:
    from ray._private import ray_constants  # ray may have been imported before the variable was set

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def split_address(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host:
        return rest, DEFAULT_PORT
    try:
        return host.strip("[]"), int(port)
    except ValueError:
        raise RayUnavailable(f"--ray-address {address!r} is not host:port",
                             hint="e.g. --ray-address 10.0.0.5:6379 (the head's GCS port)") from None


def unreachable(address: str, why: str) -> RayUnavailable:
    return RayUnavailable(f"Ray cluster at {address} is unreachable: {why}",
                          hint="check the address (`ray status` on the head prints it) and that its port is open "
                               "from here")
