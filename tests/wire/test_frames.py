"""relay.wire.frames: frame headers found, and text frames written, exactly as websockets does."""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.utils import apply_mask as python_apply_mask

from relay.wire.frames import MaskKeys, apply_mask, parse_header, payload, text_frame

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


@settings(max_examples=200, deadline=None)
@given(length=LENGTHS, mask=st.booleans(), key=st.binary(min_size=4, max_size=4))
def test_text_frames_are_written_byte_for_byte_as_websockets_writes_them(
        length: int, mask: bool, key: bytes) -> None:
    """A text frame, masked or not, in each length encoding, is websockets' own frame."""
    data = os.urandom(length)
    with mock.patch("secrets.token_bytes", return_value=key):
        expected = serialize(Opcode.TEXT, data, fin=True, mask=mask)
    assert text_frame(data, key if mask else None) == expected


def test_mask_keys_are_fresh_four_bytes_from_the_os() -> None:
    """Keys come from os.urandom a batch at a time; each is four bytes and used once."""
    with mock.patch("os.urandom", side_effect=lambda n: bytes(range(n))) as urandom:
        keys = MaskKeys(batch=3)
        drawn = [keys.next() for _ in range(7)]
    assert urandom.call_count == 3  # 3 + 3 + 1 keys
    assert drawn[:3] == [bytes(range(0, 4)), bytes(range(4, 8)), bytes(range(8, 12))]
    assert drawn[3] == drawn[0] and all(len(key) == 4 for key in drawn)
    real = MaskKeys()
    assert len({real.next() for _ in range(200)}) > 190  # not a counter, not constant
