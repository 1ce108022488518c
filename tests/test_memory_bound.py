"""One huge accepted image does not take the worker's memory with it: the resize works in
strips of rows, so a 13000 x 13000 PNG (169 megapixels, under the default --max-pixels)
is extracted in well under 2 GB."""

import os
import subprocess
import sys

import pytest
from extract_runs import extract_args
from PIL import Image

from cdul.sample import write_voc_layout

MEASURE = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(done.returncode)
"""


@pytest.mark.slow
def test_a_huge_image_is_extracted_in_bounded_memory(tmp_path):
    big = Image.new("P", (13000, 13000), 1)  # a palette image: stored as PNG bytes
    big.putpalette([30, 120, 200, 250, 10, 10] * 128)
    big.paste(0, (4000, 4000, 9000, 9000))
    root = write_voc_layout(str(tmp_path / "voc"), {"huge": (big, ["person"])})
    del big
    size = os.path.getsize(os.path.join(root, "JPEGImages", "huge.jpg"))
    assert size < 2_000_000
    cli = os.path.join(os.path.dirname(sys.executable), "cdul-extract")
    cmd = [cli, *extract_args(root, tmp_path / "s.zarr", snippet=1, quiet=True)]
    # a fresh parent whose only children are the command's processes: the peak is theirs alone
    # (this test process's own children, reaped at any time, would count in its own figure)
    r = subprocess.run([sys.executable, "-c", MEASURE, *map(str, cmd)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    peak_mb = int(r.stdout.split()[-1]) / 1024
    assert peak_mb < 2000, f"peak RSS {peak_mb:.0f} MB"
    print(f"peak RSS of the extraction: {peak_mb:.0f} MB")
    import zarr

    assert zarr.open_group(str(tmp_path / "s.zarr"), mode="r")["images/status"][:].tolist() == [1]
