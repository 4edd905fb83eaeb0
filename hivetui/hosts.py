"""Build the fleet from the config: one reader per host, SSH or local."""

from __future__ import annotations

from hivetui.backends.nvml import NvmlReader
from hivetui.backends.ssh import SshTarget, SshTransport
from hivetui.backends.transport import LocalTransport, Transport
from hivetui.collect import HostReader
from hivetui.config import Config, HostConfig
from hivetui.fleet import Fleet


def transport_for(host: HostConfig, config: Config) -> Transport:
    if host.is_local:
        return LocalTransport()
    ssh = config.ssh
    return SshTransport(
        SshTarget(
            name=host.name,
            address=host.address,
            port=host.port,
            user=host.user,
            identity_file=host.identity_file,
            ssh_config=ssh.config,
            known_hosts=ssh.known_hosts,
            connect_timeout=ssh.connect_timeout,
            keepalive_interval=ssh.keepalive_interval,
        )
    )


def build_fleet(config: Config) -> Fleet:
    """The fleet for this config; nothing connects until it is started or swept."""
    readers = [
        HostReader(
            host.name,
            transport_for(host, config),
            interval=config.refresh_interval,
            command_timeout=config.ssh.command_timeout,
            nvml=NvmlReader.open() if host.is_local else None,
        )
        for host in config.effective_hosts
    ]
    points = int(config.history_minutes * 60 / config.refresh_interval)
    return Fleet(readers, history_points=points)
