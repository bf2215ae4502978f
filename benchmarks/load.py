"""Peak host memory of loading a ~1.2 GB bf16 checkpoint: unsharded vs streamed into shards.

``from_pretrained(dir, mesh=...)`` builds every parameter with
``jax.make_array_from_callback``: each device's slice is read from the memory-mapped
safetensors file on its own, so no full stacked tensor is ever assembled on the host.
Without a mesh, each parameter is read whole (the stacked layer weights are assembled
from the per-layer tensors) and then copied to the device. Each side runs in its own
process (8 simulated CPU devices, mesh fsdp=8 for the sharded side); we report peak
RSS minus the RSS after loading (the transient overhead) and the model's own size.
On CPU the "devices" share the process's memory, so the final RSS is the same for
both; the difference is the transient peak. Memory, not time: the load average does
not distort it (the protocol record is kept anyway).

    python benchmarks/load.py          # 16 layers, d 2048, vocab 32000: 1.17 GB in bf16

Writes benchmarks/results/load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _protocol import Monitor, add_arguments, write_results

RESULTS = Path(__file__).parent / "results" / "load.json"


def make_checkpoint(directory: Path, layers: int) -> int:
    import jax.numpy as jnp
    from flax import nnx

    from jaxsafe.lm.checkpoint import save_pretrained
    from jaxsafe.lm.config import DecoderConfig
    from jaxsafe.lm.model import Decoder

    cfg = DecoderConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_layers=layers, num_heads=16,
                        num_kv_heads=16, head_dim=128)
    model = Decoder(cfg, rngs=nnx.Rngs(0), dtype=jnp.bfloat16, param_dtype=jnp.bfloat16)
    save_pretrained(model, directory)
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


def child(directory: str, sharded: bool) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    import jax

    from jaxsafe.lm.checkpoint import from_pretrained
    from jaxsafe.parallel import make_mesh

    def status_mb(field):
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith(field + ":")) / 1024

    def rss_mb():
        return status_mb("VmRSS")

    jax.numpy.zeros(1).block_until_ready()
    before = rss_mb()
    # Anonymous memory (arrays, not the mapped file's pages, which the kernel can drop) has no
    # high-water mark in /proc; a thread samples it every 2 ms while the model loads.
    anon_peak, done = [status_mb("RssAnon")], threading.Event()

    def sample():
        while not done.is_set():
            anon_peak.append(max(anon_peak[-1], status_mb("RssAnon")))
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    anon_before = status_mb("RssAnon")
    model = from_pretrained(directory, mesh=make_mesh(data=1, fsdp=8) if sharded else None)
    jax.block_until_ready(jax.tree.leaves(model))
    done.set()
    sampler.join()
    after = rss_mb()
    # VmHWM, the peak RSS of this process image: getrusage's ru_maxrss would also count the
    # parent's RSS at fork time, which Linux carries over exec (the parent holds the model
    # it just saved, so every child then "peaked" at the parent's size).
    peak = status_mb("VmHWM")
    print("RESULT " + json.dumps({"rss_before_mb": before, "rss_after_mb": after, "peak_mb": peak,
                                  "anon_before_mb": anon_before, "anon_after_mb": status_mb("RssAnon"),
                                  "anon_peak_mb": anon_peak[-1]}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layers", type=int, default=16)
    add_arguments(p)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child[0], args.child[1] == "sharded")
    monitor = Monitor()
    with tempfile.TemporaryDirectory() as tmp:
        size = make_checkpoint(Path(tmp), args.layers)
        rows = {}
        for side in ("unsharded", "sharded"):
            out = subprocess.run([sys.executable, __file__, "--child", tmp, side], capture_output=True, text=True, check=True)
            r = json.loads(next(l for l in out.stdout.splitlines() if l.startswith("RESULT "))[7:])
            r["transient_mb"] = r["peak_mb"] - r["rss_after_mb"]
            rows[side] = r
    print(f"checkpoint {size / 1e9:.2f} GB")
    for side, r in rows.items():
        print(f"{side:>10}: RSS {r['rss_before_mb']:.0f} MB before, {r['rss_after_mb']:.0f} MB after, "
              f"peak {r['peak_mb']:.0f} MB (transient {r['transient_mb']:.0f} MB above the loaded model); "
              f"anonymous memory {r['anon_before_mb']:.0f} -> peak {r['anon_peak_mb']:.0f} -> {r['anon_after_mb']:.0f} MB")
    write_results(RESULTS, {"checkpoint_bytes": size, "layers": args.layers, **rows}, monitor,
                  allow_load=args.allow_load, speed=False)


if __name__ == "__main__":
    main()
