"""An independent writer of raffle checkpoints (docs/checkpoint-format.md),
used by the integration tests to hand raffle files it did not write itself."""
import json
import struct

ESIZE = {0: 4, 1: 1, 2: 1, 3: 4, 4: 8}   # rf_dtype: f32, i8, u8, i32, i64


def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _table()


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc = _T[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def section(kind, coded, codec=0, param=0):
    """One payload section, not zstd-compressed (stored = coded)."""
    return struct.pack('<BBBBQQ', kind, codec, param, 0, len(coded), len(coded)) + coded


def write(path, meta, tensors):
    """tensors: (name, dtype, storage, shape, payload bytes, nnz) tuples."""
    meta = json.dumps(meta).encode()
    dir_len = sum(2 + len(t[0]) + 4 + 8 * len(t[3]) + 36 for t in tensors)
    off = 36 + len(meta) + dir_len
    entries, payloads = b'', b''
    for name, dt, st, shape, pay, nnz in tensors:
        numel = 1
        for d in shape:
            numel *= d
        entries += struct.pack('<H', len(name)) + name.encode() + struct.pack('<BBBB', dt, st, len(shape), 0)
        entries += b''.join(struct.pack('<Q', d) for d in shape)
        entries += struct.pack('<QQQQI', off, len(pay), numel * ESIZE[dt], nnz, crc32c(pay))
        off += len(pay)
        payloads += pay
    body = b'\x89RFK\r\n\x1a\n' + struct.pack('<IIQIII', 1, 0, off + 4, len(meta), len(tensors), dir_len) + meta + entries + payloads
    with open(path, 'wb') as f:
        f.write(body + struct.pack('<I', crc32c(body)))
