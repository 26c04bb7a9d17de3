"""Run libespeak-ng in a fresh process: JSON job on stdin, 16-bit PCM on stdout (stdlib only).

libespeak-ng keeps state between utterances, so the same text comes out slightly different the
second time in one process; a fresh process per clip makes a clip a function of its job. The job
is {"library": path, "data": path, "seed": int, "utterances": [{"text", "voice", "rate", "pitch",
"range"}]}; the output is the sample rate (int32) then, per utterance, a sample count (int32) and
that many little-endian int16 samples.
"""

from __future__ import annotations

import ctypes
import json
import struct
import sys

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_PITCH, ESPEAK_RANGE = 1, 3, 4
ESPEAK_CHARS_UTF8 = 1


def main() -> int:
    """Synthesise the job read from stdin; write the PCM to stdout."""
    job = json.loads(sys.stdin.read())
    lib = ctypes.CDLL(job["library"])
    lib.espeak_Initialize.restype = ctypes.c_int
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, job["data"].encode(), 0)
    if rate <= 0:
        sys.stderr.write(f"espeak_Initialize failed ({rate}) with data {job['data']}\n")
        return 2
    if hasattr(lib, "espeak_ng_SetRandSeed"):
        lib.espeak_ng_SetRandSeed(ctypes.c_long(int(job.get("seed", 0))))
    chunks: list[bytes] = []
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)

    def on_audio(wav, n, _events):
        if n > 0 and wav:
            chunks.append(ctypes.string_at(wav, 2 * n))
        return 0

    callback = callback_type(on_audio)  # kept referenced for the whole run
    lib.espeak_SetSynthCallback(callback)
    out = sys.stdout.buffer
    out.write(struct.pack("<i", rate))
    for utt in job["utterances"]:
        chunks.clear()
        if lib.espeak_SetVoiceByName(utt["voice"].encode()) != 0:
            sys.stderr.write(f"espeak-ng has no voice {utt['voice']!r}\n")
            return 3
        lib.espeak_SetParameter(ESPEAK_RATE, int(utt["rate"]), 0)
        lib.espeak_SetParameter(ESPEAK_PITCH, int(utt["pitch"]), 0)
        lib.espeak_SetParameter(ESPEAK_RANGE, int(utt["range"]), 0)
        text = utt["text"].encode("utf-8")
        lib.espeak_Synth(ctypes.c_char_p(text), ctypes.c_size_t(len(text) + 1), 0, 0, 0,
                         ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = b"".join(chunks)
        out.write(struct.pack("<i", len(pcm) // 2))
        out.write(pcm)
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
