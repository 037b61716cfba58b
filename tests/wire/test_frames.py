"""relay.wire.frames: frame headers found in bytes exactly where websockets writes them."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.utils import apply_mask as python_apply_mask

from relay.wire.frames import apply_mask, parse_header, payload

OPCODES = [Opcode.CONT, Opcode.TEXT, Opcode.BINARY, Opcode.CLOSE, Opcode.PING, Opcode.PONG]
#: Around the 7-bit, 16-bit and 64-bit length encodings.
LENGTHS = st.one_of(st.integers(0, 130), st.sampled_from([65_535, 65_536, 70_000]))


def serialize(opcode: Opcode, data: bytes, *, fin: bool, mask: bool) -> bytes:
    """A frame as websockets' own serializer writes it (masked as a client's)."""
    return Frame(opcode, data, fin).serialize(mask=mask)


@settings(max_examples=200, deadline=None)
@given(opcode=st.sampled_from(OPCODES), length=LENGTHS, fin=st.booleans(), mask=st.booleans())
def test_header_matches_what_websockets_serializes(opcode: Opcode, length: int, fin: bool,
                                                   mask: bool) -> None:
    """Opcode, FIN, mask bit, length and frame size agree with websockets' serializer."""
    if opcode >= Opcode.CLOSE:  # control frames: final, at most 125 bytes (RFC 6455 §5.5)
        fin, length = True, min(length, 125)
    data = (b"\x03\xe8" + b"x" * 123)[:length] if opcode == Opcode.CLOSE else os.urandom(length)
    if opcode == Opcode.CLOSE and length == 1:
        data = b""  # a close payload is empty or a code and a reason
    length = len(data)
    wire = serialize(opcode, data, fin=fin, mask=mask)
    header = parse_header(wire)
    assert header is not None
    assert (header.opcode, header.fin, header.masked, header.length) == (opcode, fin, mask, length)
    assert header.rsv_opcode == int(opcode) and header.total == len(wire)
    assert header.is_data is (opcode in (Opcode.CONT, Opcode.TEXT, Opcode.BINARY))
    assert payload(wire, 0, header) == data


@settings(max_examples=100, deadline=None)
@given(length=LENGTHS, mask=st.booleans(), prefix=st.binary(max_size=20))
def test_incomplete_headers_are_none_and_offsets_count(length: int, mask: bool,
                                                       prefix: bytes) -> None:
    """Until every header byte has arrived the answer is None; a start offset is honoured."""
    wire = prefix + serialize(Opcode.TEXT, b"x" * length, fin=True, mask=mask)
    header = parse_header(wire, len(prefix))
    assert header is not None
    for cut in range(len(prefix), len(prefix) + header.size):
        assert parse_header(wire[:cut], len(prefix)) is None
    assert parse_header(wire[:len(prefix) + header.size], len(prefix)) == header


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
def test_apply_mask_agrees_with_the_pure_python_one(data: bytes, key: bytes) -> None:
    """The C helper relay uses and websockets' pure-Python fallback unmask alike."""
    assert apply_mask(data, key) == python_apply_mask(data, key)
    assert apply_mask(apply_mask(data, key), key) == data
