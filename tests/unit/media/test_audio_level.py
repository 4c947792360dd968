"""The vectorised RFC 6465 audio level gives aiortc's values, and aiortc's sender uses it."""

from __future__ import annotations

import numpy as np
import pytest
from aiortc import rtp
from av import AudioFrame

from media import audio_level


def _frame(samples: np.ndarray) -> AudioFrame:
    frame = AudioFrame.from_ndarray(samples.reshape(1, -1).astype(np.int16), format="s16",
                                    layout="stereo")
    frame.sample_rate = 48_000
    return frame


@pytest.mark.parametrize("kind", ["silence", "full", "tone", "noise", "quiet"])
def test_same_level_as_aiortc(kind: str) -> None:
    n = 960 * 2  # 20 ms of 48 kHz stereo, interleaved
    t = np.arange(n)
    samples = {
        "silence": np.zeros(n),
        "full": np.full(n, 32767),
        "tone": 12_000 * np.sin(t / 7.0),
        "noise": np.random.default_rng(7).integers(-32768, 32767, n),
        "quiet": np.where(t % 97 == 0, 3, 0),
    }[kind]
    frame = _frame(samples)
    assert audio_level.compute_audio_level_dbov(frame) == audio_level.original(frame)


def test_levels_differ_by_loudness() -> None:
    loud = _frame(np.full(1920, 30_000))
    soft = _frame(np.full(1920, 300))
    assert audio_level.compute_audio_level_dbov(loud) > audio_level.compute_audio_level_dbov(soft)
    assert audio_level.compute_audio_level_dbov(_frame(np.zeros(1920))) == -127


def test_install_replaces_aiortcs_function() -> None:
    before = rtp.compute_audio_level_dbov
    try:
        audio_level.install()
        assert rtp.compute_audio_level_dbov is audio_level.compute_audio_level_dbov
    finally:
        rtp.compute_audio_level_dbov = before
