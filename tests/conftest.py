"""Shared pytest configuration: quiet the chatty client libraries in captured logs."""

import logging

for _name in ("kafka", "paho", "py4j", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)
