"""Unit tests of the pure parts of ``iotflink/stack.py`` (no service is started)."""

from __future__ import annotations

import base64
import re

import pytest

from iotflink import stack

#: What ``kafka-storage format -t`` accepts: 22 URL-safe base64 characters, not read as an option.
_CLUSTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{21}$")


@pytest.mark.parametrize("first", range(256))
def test_kafka_cluster_id_never_starts_with_dash_or_underscore(first):
    """Every value of the first byte, the only one that decides the first character: 22
    characters, never a leading ``-`` (argparse4j would read it as an option) or ``_``."""
    raw = bytes([first]) + bytes(range(1, 16))
    cid = stack.kafka_cluster_id(raw)
    assert len(cid) == 22
    assert cid[0] not in "-_", (first, cid)
    assert _CLUSTER_ID.match(cid), cid
    # the id decodes back to the 16 bytes, with the first byte's top bit cleared
    decoded = base64.urlsafe_b64decode(cid + "==")
    assert decoded == bytes([first & 0x7F]) + raw[1:]


def test_kafka_cluster_id_worst_case_bytes():
    """All ones is the input whose plain base64 starts with ``_`` (and ``0xF8`` with ``-``)."""
    assert base64.urlsafe_b64encode(b"\xff" * 16).decode()[0] == "_"
    assert base64.urlsafe_b64encode(b"\xf8" + b"\0" * 15).decode()[0] == "-"
    for raw in (b"\xff" * 16, b"\xf8" + b"\0" * 15, b"\0" * 16):
        cid = stack.kafka_cluster_id(raw)
        assert len(cid) == 22 and _CLUSTER_ID.match(cid), cid


def test_kafka_cluster_id_random_ids_are_valid_and_distinct():
    ids = {stack.kafka_cluster_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(_CLUSTER_ID.match(cid) for cid in ids)


@pytest.mark.parametrize("raw", [b"", b"\0" * 15, b"\0" * 17])
def test_kafka_cluster_id_rejects_wrong_length(raw):
    with pytest.raises(ValueError, match="16 bytes"):
        stack.kafka_cluster_id(raw)


def test_service_status_is_a_frozen_record():
    st = stack.ServiceStatus("kafka", 1, True, False, stack.Path("/x.log"))
    assert (st.name, st.pid, st.running, st.ready, st.detail) == ("kafka", 1, True, False, "")
    with pytest.raises(AttributeError):
        st.ready = True  # type: ignore[misc]
