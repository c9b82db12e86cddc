#!/usr/bin/env python3
"""Fails when deploy/monitoring/prometheusrule.yaml and alerts.yaml differ."""
import sys

import yaml

plain = yaml.safe_load(open("deploy/monitoring/alerts.yaml"))
operator = yaml.safe_load(open("deploy/monitoring/prometheusrule.yaml"))
if operator.get("spec") != plain:
    sys.exit("deploy/monitoring/prometheusrule.yaml does not carry the groups of alerts.yaml")
print("PrometheusRule matches alerts.yaml")
