#!/usr/bin/env python3
# A Llama 3.2 1B-shaped Hugging Face folder (two bf16 safetensors shards, index, config.json,
# a tokenizer copied from TOKENIZER_DIR) with random but finite weights, for timing slm convert
# (docs/performance.md). Needs no numpy. Usage: make-hf-checkpoint.py OUT_DIR TOKENIZER_DIR
import json, os, struct, sys, shutil
out, tokdir = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
V, E, L, H, KV, HD, F = 128256, 2048, 16, 32, 8, 64, 8192
shapes = [("model.embed_tokens.weight", [V, E])]
for l in range(L):
    p = f"model.layers.{l}."
    shapes += [(p+"input_layernorm.weight", [E]), (p+"self_attn.q_proj.weight", [H*HD, E]),
               (p+"self_attn.k_proj.weight", [KV*HD, E]), (p+"self_attn.v_proj.weight", [KV*HD, E]),
               (p+"self_attn.o_proj.weight", [E, H*HD]), (p+"post_attention_layernorm.weight", [E]),
               (p+"mlp.gate_proj.weight", [F, E]), (p+"mlp.up_proj.weight", [F, E]), (p+"mlp.down_proj.weight", [E, F])]
shapes.append(("model.norm.weight", [E]))
rnd = bytearray(os.urandom(1 << 20))
for i in range(1, len(rnd), 2):
    rnd[i] = (rnd[i] & 0x80) | 0x3C   # bf16 high byte: sign, exponent near 2^-7: finite values
rnd = bytes(rnd)
# two shards, as Hub checkpoints come
half = len(shapes) // 2
index = {"metadata": {}, "weight_map": {}}
for si, part in enumerate([shapes[:half], shapes[half:]]):
    name = f"model-{si+1:05d}-of-00002.safetensors"
    header, off = {}, 0
    for n, s in part:
        nb = 2
        for d in s: nb *= d
        header[n] = {"dtype": "BF16", "shape": s, "data_offsets": [off, off + nb]}
        off += nb
        index["weight_map"][n] = name
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(out, name), "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        left = off
        while left > 0:
            k = min(left, len(rnd)); f.write(rnd[:k]); left -= k
json.dump(index, open(os.path.join(out, "model.safetensors.index.json"), "w"))
cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": E, "intermediate_size": F,
       "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": HD,
       "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
       "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                        "original_max_position_embeddings": 8192, "rope_type": "llama3"},
       "tie_word_embeddings": True, "torch_dtype": "bfloat16", "vocab_size": V, "bos_token_id": 128000, "eos_token_id": 128001}
json.dump(cfg, open(os.path.join(out, "config.json"), "w"), indent=1)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(tokdir, f), os.path.join(out, f))
