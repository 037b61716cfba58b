"""G.711 μ-law at 8 kHz: the phone audio Twilio streams and relay passes through.

relay itself never transcodes a call's audio; the built-in local model and the
simulated caller use these to hear and to speak.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from typing import Final

SAMPLE_RATE: Final = 8000
SILENCE: Final = 0xFF  # μ-law code word for linear 0
_BIAS: Final = 0x84
_CLIP: Final = 32635


def _decode(byte: int) -> int:
    byte = ~byte & 0xFF  # μ-law code words are sent inverted
    magnitude = ((((byte & 0x0F) << 3) + _BIAS) << ((byte >> 4) & 0x07)) - _BIAS
    return -magnitude if byte & 0x80 else magnitude


_TO_LINEAR: Final = tuple(_decode(b) for b in range(256))
_SQUARED: Final = tuple(v * v for v in _TO_LINEAR)


def encode_sample(sample: int) -> int:
    """One signed 16-bit linear sample as a μ-law byte (clipped to ±32635)."""
    magnitude = min(abs(int(sample)), _CLIP) + _BIAS
    exponent = magnitude.bit_length() - 8  # 0..7 because 0x84 <= magnitude < 2**15
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    # Code words are sent inverted, and a set top bit on the wire means positive.
    return ((exponent << 4) | mantissa) ^ (0x7F if sample < 0 else 0xFF)


def linear_to_ulaw(samples: Iterable[int]) -> bytes:
    """Encode 16-bit linear samples as μ-law."""
    return bytes(encode_sample(s) for s in samples)


def ulaw_to_linear(data: bytes) -> list[int]:
    """Decode μ-law bytes to 16-bit linear samples (0xFF and 0x7F are 0)."""
    return [_TO_LINEAR[b] for b in data]


def ulaw_rms(data: bytes) -> float:
    """Root mean square of μ-law audio in 16-bit linear units (0.0 for no data)."""
    if not data:
        return 0.0
    return math.sqrt(sum(_SQUARED[b] for b in data) / len(data))


@functools.lru_cache(maxsize=32)
def tone(ms: int, frequency: float = 440.0, amplitude: int = 16000) -> bytes:
    """``ms`` milliseconds of a sine tone as μ-law, starting at phase 0."""
    step = 2 * math.pi * frequency / SAMPLE_RATE
    return linear_to_ulaw(round(amplitude * math.sin(step * n))
                          for n in range(ms * SAMPLE_RATE // 1000))


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of μ-law silence."""
    return bytes([SILENCE]) * (ms * SAMPLE_RATE // 1000)
