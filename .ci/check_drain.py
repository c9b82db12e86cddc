#!/usr/bin/env python3
"""Fails when a rendered manifest lets Kubernetes kill a draining gateway:
terminationGracePeriodSeconds must be at least the preStop sleep plus the
gateway's server.drain_timeout plus 5 s.

Usage: check_drain.py RENDERED.yaml..."""
import re
import sys

import yaml

UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}


def seconds(text):
    """A duration as the gateway writes it: 300s, 5m, 1h 30m, 500ms."""
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h)", str(text))
    if not parts or re.sub(r"[\d.\s]|ms|s|m|h", "", str(text)):
        sys.exit(f"cannot read the duration {text!r}")
    return sum(float(n) * UNITS[u] for n, u in parts)


def check(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    configs = {
        d["metadata"]["name"]: d.get("data", {})
        for d in docs
        if d.get("kind") == "ConfigMap"
    }
    deployments = [
        d for d in docs
        if d.get("kind") == "Deployment" and d["metadata"]["name"] == "ai-api-gateway"
    ]
    if not deployments:
        sys.exit(f"{path}: no Deployment ai-api-gateway")
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        grace = pod.get("terminationGracePeriodSeconds", 30)
        container = next(c for c in pod["containers"] if c["name"] == "ai-api-gateway")
        command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop = float(command[-1]) if command[:1] in (["/bin/sleep"], ["sleep"]) else 0
        volume = next(v for v in pod["volumes"] if "configMap" in v)
        config_map = configs[volume["configMap"]["name"]]
        gateway = yaml.safe_load(config_map["gateway.yaml"])
        drain = seconds(gateway.get("server", {}).get("drain_timeout", "300s"))
        need = pre_stop + drain + 5
        if grace < need:
            sys.exit(
                f"{path}: terminationGracePeriodSeconds is {grace}, below preStop {pre_stop:g} s "
                f"+ drain_timeout {drain:g} s + 5 s = {need:g}"
            )
        print(f"{path}: terminationGracePeriodSeconds {grace} >= preStop {pre_stop:g} s + drain_timeout {drain:g} s + 5 s")


for rendered in sys.argv[1:]:
    check(rendered)
