"""The lab: real Debian hosts (systemd-nspawn containers in network namespaces), a flaky backend,
a traffic source, an outsider and a fake AWS (moto), all on one machine. `python -m lab --help`."""
