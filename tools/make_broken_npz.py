#!/usr/bin/python3
"""Generates the .npy/.npz files used by tests/test_npz.cpp and the fuzzer's seed corpus.

Run from the repository root:  /usr/bin/python3 tools/make_broken_npz.py
Writes tests/data/npz/ (numpy-made valid files and deliberately broken ones) and
tests/fuzz/corpus/ (small valid seeds). Every file stays well under 20 KB. Output is
deterministic except for zip timestamps in the numpy-made .npz files.
"""
import argparse
import io
import os
import struct
import zipfile
import zlib

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "npz")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    assert len(data) < 20 * 1024, (name, len(data))
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def npy_bytes(array, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version, allow_pickle=True)
    return buf.getvalue()


def npy_raw(header, data, version=1):
    """An .npy with a hand-written header dict (padded like numpy) and raw data bytes."""
    header = header.encode("latin1")
    prefix = 10 if version == 1 else 12
    header += b" " * ((-(prefix + len(header) + 1)) % 64) + b"\n"
    size = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + size + header + data


def zip_raw(entries):
    """A zip built by hand so that sizes may lie.

    entries: list of (name, method, payload, crc, declared_size, offset_override) where
    payload is the stored or raw-deflated bytes and offset_override (or None) points the
    central directory at another entry's local header.
    """
    out, central, offsets = b"", b"", []
    for name, method, payload, crc, size, override in entries:
        name_b = name.encode()
        offsets.append(len(out))
        if override is not None:
            continue
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc,
                           len(payload), size, len(name_b), 0) + name_b + payload
    for (name, method, payload, crc, size, override), offset in zip(entries, offsets):
        name_b = name.encode()
        offset = offsets[override] if override is not None else offset
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0, crc,
                               len(payload), size, len(name_b), 0, 0, 0, 0, 0, offset) + name_b
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central),
                      len(out), 0)
    return out + central + end


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def stored(name, data):
    return (name, 0, data, zlib.crc32(data), len(data), None)


def savez(compressed, **arrays):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def main():
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    sample = dict(
        f32=np.arange(6, dtype="<f4").reshape(2, 3) / 4,
        f64=np.array([1.5, -2.25, 1e300], dtype="<f8"),
        i32=np.array([[1, -2], [3, 2**31 - 1]], dtype="<i4"),
        i64=np.array([-(2**63), 2**63 - 1, 7], dtype="<i8"),
        u8=np.array([0, 1, 255], dtype="|u1"),
        b=np.array([True, False, True]),
        scalar=np.array(3.5, dtype="<f8"),
        empty=np.zeros((0, 3), dtype="<f4"),
    )
    # Valid files made by numpy.
    write(DATA, "numpy_savez.npz", savez(False, **sample))
    write(DATA, "numpy_savez_compressed.npz", savez(True, **sample))
    matrix = np.arange(12, dtype="<f8").reshape(3, 4) - 5.5
    write(DATA, "numpy_v1.npy", npy_bytes(matrix, (1, 0)))
    write(DATA, "numpy_v2.npy", npy_bytes(matrix, (2, 0)))
    write(DATA, "numpy_v3.npy", npy_bytes(matrix, (3, 0)))
    write(DATA, "numpy_scalar.npy", npy_bytes(np.array(-7, dtype="<i8")))
    write(DATA, "numpy_fortran.npy",
          npy_bytes(np.asfortranarray(np.arange(24, dtype="<i4").reshape(2, 3, 4))))

    # Broken .npy files.
    v1 = npy_bytes(matrix)
    write(DATA, "truncated_data.npy", v1[:-5])
    write(DATA, "wrong_magic.npy", b"\x93NUMPX" + v1[6:])
    write(DATA, "garbage_header.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, "
                                              "'shape': (3,), 'extra': 1}", bytes(12)))
    write(DATA, "dtype_c8.npy", npy_bytes(np.array([1 + 2j], dtype="<c8")))
    write(DATA, "dtype_object.npy", npy_bytes(np.array([1, "a"], dtype=object)))
    write(DATA, "big_endian.npy", npy_bytes(np.array([1, 2], dtype=">f4")))
    write(DATA, "huge_shape.npy", npy_raw("{'descr': '<f4', 'fortran_order': False, "
                                          "'shape': (1099511627776, 1099511627776), }",
                                          bytes(16)))

    # Broken .npz files.
    plain = savez(False, **sample)
    write(DATA, "truncated.npz", plain[: len(plain) // 2])
    write(DATA, "not_a_zip.npz", b"this is not a zip archive\n")
    huge = npy_raw("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000,), }",
                   bytes(48))
    write(DATA, "huge_elements.npz", zip_raw([stored("w.npy", huge)]))
    a = npy_bytes(np.arange(3, dtype="<f4"))
    write(DATA, "duplicate.npz", zip_raw([stored("a.npy", a), stored("a.npy", a)]))
    write(DATA, "empty_name.npz", zip_raw([stored(".npy", a)]))
    # Zip bomb: the directory declares the 4-element array below, the deflate stream holds it
    # followed by 10 MB of zeros.
    small = npy_bytes(np.zeros(4, dtype="<f4"))
    bomb = deflate(small + bytes(10 * 1024 * 1024))
    write(DATA, "zip_bomb.npz", zip_raw([("w.npy", 8, bomb, zlib.crc32(small), len(small),
                                          None)]))
    # Declares 2 GiB + 1 uncompressed bytes from a tiny deflate stream.
    write(DATA, "zip_huge_declared.npz",
          zip_raw([("w.npy", 8, deflate(small), zlib.crc32(small), 2**31 + 1, None)]))
    # Two directory entries share one compressed stream (the "overlapping" zip bomb).
    big = npy_bytes(np.arange(1000, dtype="<f4"))
    dbig = deflate(big)
    write(DATA, "overlapping.npz",
          zip_raw([("a.npy", 8, dbig, zlib.crc32(big), len(big), None),
                   ("b.npy", 8, dbig, zlib.crc32(big), len(big), 0)]))

    # Fuzzer seeds: small valid files.
    small_set = dict(w=np.arange(6, dtype="<f4").reshape(2, 3), s=np.array(1, dtype="<i8"),
                     b=np.array([True, False]))
    write(CORPUS, "plain.npz", savez(False, **small_set))
    write(CORPUS, "deflated.npz", savez(True, **small_set))
    write(CORPUS, "v1.npy", npy_bytes(np.arange(4, dtype="<i4")))
    write(CORPUS, "v2.npy", npy_bytes(np.arange(3, dtype="<f8"), (2, 0)))
    write(CORPUS, "fortran.npy", npy_bytes(np.asfortranarray(np.arange(6, dtype="|u1")
                                                             .reshape(2, 3))))


if __name__ == "__main__":
    main()
