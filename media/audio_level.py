"""The audio level of an audio frame (RFC 6465 section 3 and Appendix A), vectorised.

aiortc's RTP sender puts the RFC 6465 audio level header extension on every Opus packet it
encodes, computing it with a Python loop over each 16-bit sample (1,920 per 20 ms stereo
frame). In transcode mode the relay encodes one audio stream per subscriber, and that loop was
a quarter of the relay's CPU (bench/README.md). `compute_audio_level_dbov` gives the same value
with numpy; `install` makes aiortc's sender use it in this process.
https://www.rfc-editor.org/rfc/rfc6465#appendix-A"""

from __future__ import annotations

import math

import numpy as np
from aiortc import rtp
from av import AudioFrame

__all__ = ["compute_audio_level_dbov", "install"]

MAX_SAMPLE_VALUE = 32767
MIN_AUDIO_LEVEL = -127  # dBov, the level of silence
MAX_AUDIO_LEVEL = 0


def compute_audio_level_dbov(frame: AudioFrame) -> int:
    """The level in dBov (-127..0) of `frame`'s first plane of s16 samples, as aiortc's
    aiortc.rtp.compute_audio_level_dbov computes it: RMS over `frame.samples` samples."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * MAX_SAMPLE_VALUE * MAX_SAMPLE_VALUE))
    if rms > 0:
        db = max(20 * math.log10(rms), MIN_AUDIO_LEVEL)
        db = min(db, MAX_AUDIO_LEVEL)
    else:
        db = MIN_AUDIO_LEVEL
    return round(db)


_original = rtp.compute_audio_level_dbov


def install() -> None:
    """Have aiortc's RTP senders (which call `rtp.compute_audio_level_dbov`) use this one."""
    rtp.compute_audio_level_dbov = compute_audio_level_dbov


def original(frame: AudioFrame) -> int:
    """aiortc's own implementation (for comparison in tests)."""
    return _original(frame)
