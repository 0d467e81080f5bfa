"""The crypto floor: CPU time of N RSA generations (4096 bits unless told) in one Python process.

Usage: python bench/keygen.py N [BITS]  -> prints one JSON line
{"n": N, "cpu_s": ..., "wall_s": ..., "per_key_cpu_s": [...], "cryptography": "x.y"}.
Run in its own process so neither the harness nor Ansible shares its interpreter.
A key is generated as cryptography >= 39 does it and as the collection does on every version
(plugins/module_utils/keys.py): not checked again once OpenSSL made it. cryptography 37 and 38
(Debian 12) check each new key unless told not to, a sixth of an RSA-4096 key's CPU; a floor
that paid it would be a floor the bundle no longer pays.
"""
from __future__ import annotations

import json
import sys
import time

import cryptography
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    bits = int(sys.argv[2]) if len(sys.argv) > 2 else 4096
    per_key = []
    backend = default_backend()
    if hasattr(backend, "_rsa_skip_check_key"):  # 37 and 38: the switch keys.py sets
        backend._rsa_skip_check_key = True
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        c = time.process_time()
        # The key is dropped at once: only the cost of making it is measured.
        rsa.generate_private_key(public_exponent=65537, key_size=bits, backend=backend)
        per_key.append(round(time.process_time() - c, 4))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(json.dumps({"n": n, "cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
                      "per_key_cpu_s": per_key, "cryptography": cryptography.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
