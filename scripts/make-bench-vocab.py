#!/usr/bin/env python3
"""A vocabulary-only GGUF of a given size, for `slm synth` shapes whose real tokenizer is not at
hand (Gemma 3's 262,144 tokens): SentencePiece-style ("llama" model), <pad> <eos> <bos> <unk>
first, the 256 byte tokens, then made-up pieces. Its texts mean nothing; benchmarks feed token
ids, so only the size matters.

Usage: /usr/bin/python3 scripts/make-bench-vocab.py 262144 out.gguf
"""
import struct
import sys

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def main(n, path):
    tokens = ["<pad>", "<eos>", "<bos>", "<unk>"] + [f"<0x{b:02X}>" for b in range(256)]
    tokens += [f"\u2581w{i}" for i in range(n - len(tokens))]
    types = [3, 3, 3, 2] + [6] * 256 + [1] * (n - 260)  # control, unknown, byte, normal
    kv = bytearray()
    count = 0

    def put(key, body):
        nonlocal count
        kv.extend(gstr(key) + body)
        count += 1

    put("general.architecture", struct.pack("<I", GGUF_STRING) + gstr("gemma3"))
    put("tokenizer.ggml.model", struct.pack("<I", GGUF_STRING) + gstr("llama"))
    put("tokenizer.ggml.tokens", struct.pack("<IIQ", GGUF_ARRAY, GGUF_STRING, n) + b"".join(gstr(t) for t in tokens))
    put("tokenizer.ggml.scores", struct.pack("<IIQ", GGUF_ARRAY, GGUF_F32, n) + struct.pack(f"<{n}f", *[-float(i) for i in range(n)]))
    put("tokenizer.ggml.token_type", struct.pack("<IIQ", GGUF_ARRAY, GGUF_I32, n) + struct.pack(f"<{n}i", *types))
    for key, v in [("bos_token_id", 2), ("eos_token_id", 1), ("unknown_token_id", 3), ("padding_token_id", 0)]:
        put(f"tokenizer.ggml.{key}", struct.pack("<II", GGUF_U32, v))
    put("tokenizer.ggml.add_bos_token", struct.pack("<I?", GGUF_BOOL, True))
    with open(path, "wb") as f:
        f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, count) + kv)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
